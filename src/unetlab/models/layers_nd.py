"""The one place that maps a spatial rank to Keras layer classes: 2 (images, (H, W, C)) or 3 (volumes,
(D, H, W, C)), so that every builder has one code path for both, as MONAI's `spatial_dims` does.

A builder reads the rank from its input shape (`spatial_dims`), a block from the tensor it is given
(`layers_for(x)`); kernel sizes and strides given as one int apply along every axis.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from keras import layers

from ..errors import ConfigError


@dataclass(frozen=True)
class SpatialLayers:
    """The layer classes of one spatial rank `dims`."""

    dims: int
    conv: type
    conv_transpose: type
    max_pooling: type
    upsampling: type  # nearest neighbour
    smooth_upsampling: Callable  # bilinear in 2D; nearest in 3D (Keras' UpSampling3D has no trilinear mode)
    cropping: type


LAYERS = {
    2: SpatialLayers(2, layers.Conv2D, layers.Conv2DTranspose, layers.MaxPooling2D, layers.UpSampling2D,
                     functools.partial(layers.UpSampling2D, interpolation="bilinear"), layers.Cropping2D),
    3: SpatialLayers(3, layers.Conv3D, layers.Conv3DTranspose, layers.MaxPooling3D, layers.UpSampling3D,
                     layers.UpSampling3D, layers.Cropping3D),
}


def spatial_dims(input_shape) -> int:
    """2 for an input shape (height, width, channels), 3 for (depth, height, width, channels); a one-line
    ConfigError naming `input_shape` for any other length."""
    dims = len(input_shape) - 1
    if dims not in LAYERS:
        raise ConfigError(f"input_shape must be (height, width, channels) or (depth, height, width, channels). "
                          f"Received: input_shape={tuple(input_shape)}")
    return dims


def layers_for(x) -> SpatialLayers:
    """The layer classes for the tensor `x` (batch, *spatial, channels), by its rank."""
    return LAYERS[len(x.shape) - 2]
