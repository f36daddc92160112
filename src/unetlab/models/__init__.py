"""Model builders, selected by name from `MODELS`."""

from .unet import build_unet, conv_block, describe, down_block, up_block

MODELS = {"unet": build_unet}

__all__ = ["MODELS", "build_unet", "conv_block", "describe", "down_block", "up_block"]
