"""Model builders, selected by name from `MODELS`."""

from .any_size import with_any_input_size, with_input_size
from .unet import build_unet, conv_block, describe, down_block, up_block

MODELS = {"unet": build_unet}

__all__ = ["MODELS", "build_unet", "conv_block", "describe", "down_block", "up_block", "with_any_input_size", "with_input_size"]
