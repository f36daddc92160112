"""The U-Net of Ronneberger, Fischer and Brox (2015), "U-Net: Convolutional
Networks for Biomedical Image Segmentation", MICCAI, arXiv:1505.04597.

Defaults give the classic Keras U-Net (same padding, UpSampling2D, sigmoid head):
with 1 input channel, 1 class and filters=32 it has 7,846,081 parameters. The
paper's network is `filters=64, padding="valid", upsampling="transpose"` with a
2-class softmax head (572x572 in, 388x388 out).

Input-shape rule: with `padding="same"` height and width must be divisible by
2**depth; with `padding="valid"` see `unetlab.geometry.unet_output_size`.
Layers are named by level (`enc1_conv2`, `down2`, `up3`, `dec3_conv1`, `head`).
"""

from __future__ import annotations

import keras
from keras import layers

from ..errors import ConfigError
from ..geometry import unet_output_size
from ..names import PADDING, POOLING, UPSAMPLING, check_choice


def conv_block(x, filters: int, name: str, *, padding: str = "same", batch_norm: bool = False,
               kernel_initializer: str = "he_normal"):
    """Two 3x3 convolutions, each followed by (optional batch norm and) ReLU."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding=padding, use_bias=not batch_norm,
                          kernel_initializer=kernel_initializer, name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def down_block(x, filters: int, name: str, *, pooling: str = "max", kernel_initializer: str = "he_normal"):
    """Halve height and width: 2x2 max pooling or a strided 2x2 convolution."""
    if pooling == "max":
        return layers.MaxPooling2D(2, name=name)(x)
    return layers.Conv2D(filters, 2, strides=2, kernel_initializer=kernel_initializer, name=name)(x)


def up_block(x, skip, filters: int, name: str, *, upsampling: str = "nearest",
             kernel_initializer: str = "he_normal"):
    """Double height and width, then concatenate the (centre-cropped) skip tensor.

    `nearest` repeats pixels (UpSampling2D, the classic Keras U-Net); `transpose`
    is the paper's 2x2 up-convolution that halves the channels.
    """
    if upsampling == "nearest":
        x = layers.UpSampling2D(2, interpolation="nearest", name=name)(x)
    else:
        x = layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer=kernel_initializer, name=name)(x)
    crop = (skip.shape[1] - x.shape[1]) // 2 if skip.shape[1] and x.shape[1] else 0
    if crop:
        skip = layers.Cropping2D(crop, name=f"{name}_crop")(skip)
    return layers.Concatenate(name=f"{name}_concat")([skip, x])


def build_unet(input_shape: tuple[int | None, int | None, int] = (None, None, 1), num_classes: int = 1, *,
               depth: int = 4, filters: int = 32, batch_norm: bool = False, dropout: float = 0.0,
               pooling: str = "max", upsampling: str = "nearest", padding: str = "same",
               kernel_initializer: str = "he_normal", name: str = "unet") -> keras.Model:
    """Build a U-Net; `num_classes=1` gives a sigmoid head, K > 1 a K-way softmax.

    The head always computes in float32, so the model is safe under mixed precision.
    """
    check_choice("pooling", pooling, POOLING)
    check_choice("upsampling", upsampling, UPSAMPLING)
    check_choice("padding", padding, PADDING)
    for argument, value in (("depth", depth), ("filters", filters), ("num_classes", num_classes)):
        if value < 1:
            raise ConfigError(f"{argument} must be >= 1. Received: {argument}={value}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    for size in input_shape[:2]:
        if size is not None:
            unet_output_size(size, depth, padding)
    if padding == "valid" and None in input_shape[:2]:
        raise ConfigError(f"padding='valid' needs a fixed input height and width (skips are cropped). "
                          f"Received: input_shape={tuple(input_shape)}")

    common = dict(batch_norm=batch_norm, padding=padding, kernel_initializer=kernel_initializer)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = conv_block(x, filters * 2**level, f"enc{level}", **common)
        skips.append(x)
        x = down_block(x, filters * 2**level, f"down{level}", pooling=pooling, kernel_initializer=kernel_initializer)
    x = conv_block(x, filters * 2**depth, "bottleneck", **common)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(depth)):
        x = up_block(x, skips[level], filters * 2**level, f"up{level}", upsampling=upsampling,
                     kernel_initializer=kernel_initializer)
        x = conv_block(x, filters * 2**level, f"dec{level}", **common)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    outputs = layers.Conv2D(num_classes, 1, activation=activation, dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def describe(model: keras.Model, depth: int, filters: int) -> str:
    """One line saying what was built: 'U-Net depth=4 filters=32: 7.8M params'."""
    params = model.count_params()
    return f"U-Net depth={depth} filters={filters}: {params / 1e6:.1f}M params ({params:,})"
