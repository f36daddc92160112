"""Model builders, selected by name from `MODELS` (the config's `model.name`)."""

from .any_size import with_any_input_size, with_input_size
from .unet import build_unet, conv_block, describe, down_block, layer_table, up_block
from .encoder_unet import build_encoder_unet
from .unet_plus_plus import build_unet_plus_plus
from .nnunet import build_nnunet
from .heads import DeepSupervision, inference_model

MODELS = {"unet": build_unet, "unetpp": build_unet_plus_plus, "encoder_unet": build_encoder_unet, "nnunet": build_nnunet}

__all__ = ["MODELS", "DeepSupervision", "build_encoder_unet", "build_nnunet", "build_unet", "build_unet_plus_plus",
           "conv_block", "describe", "down_block", "inference_model", "layer_table", "up_block", "with_any_input_size",
           "with_input_size"]
