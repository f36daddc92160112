"""The network nnU-Net v2 trains: its `PlainConvUNet` (Isensee et al. 2021, "nnU-Net: a self-configuring
method for deep learning-based biomedical image segmentation", Nature Methods 18:203; the
dynamic_network_architectures package), as its planner describes it.

Stage i of the encoder is two convolutions of `kernel_sizes[i]`, each followed by instance
normalisation (affine) and LeakyReLU(0.01); the first convolution of stage i has stride `strides[i]`
(stride 1 in the first stage: no pooling layers), and stage i has min(filters * 2**i, max_filters)
channels (32 and 512 in nnU-Net's 2D plans, 320 in 3D: pass `max_filters=320`). The last stage is the
bottleneck. The decoder mirrors it: a transposed convolution with kernel and stride `strides[i + 1]` to
stage i's channels, the concatenation [upsampled, skip], two convolutions of `kernel_sizes[i]` with norm
and LeakyReLU. Every convolution has a bias (nnU-Net's `conv_bias=True`). The 1x1 head
(`unetlab.models.heads`) is on the full-resolution stage; deep supervision (on by default, as nnU-Net trains) adds heads on the other
decoder stages but the lowest.

2D or 3D by the input shape ((H, W, C) or (D, H, W, C); the layer classes from `unetlab.models.layers_nd`).
`strides` and `kernel_sizes` are lists with one entry per stage, each an int or a per-axis list ([height,
width], or [depth, height, width] in 3D), so a plan can make them anisotropic (nnU-Net's 3d_fullres plans
of thick-slice scans: [[1, 1, 1], [1, 2, 2], [2, 2, 2], ...]). Every spatial size must be a multiple of the
product of the strides along its axis. Layers are named by stage: `enc2_conv1`, `enc2_norm1`, `dec2_up`,
`dec2_concat`.
"""

from __future__ import annotations

import keras
from keras import layers

from ..errors import ConfigError
from ..geometry import check_strided_input_size, stage_pairs
from .heads import count_line, supervised_model
from .layers_nd import layers_for, spatial_dims

STRIDES = (1, 2, 2, 2, 2, 2)  # six stages: five downsamplings, an input multiple of 32
KERNEL_SIZES = (3, 3, 3, 3, 3, 3)
NEGATIVE_SLOPE = 0.01  # nnU-Net's LeakyReLU
EPSILON = 1e-5  # nnU-Net's InstanceNorm eps


def conv_norm_relu(x, filters: int, kernel_size, strides, name: str):
    """Convolution (with bias), instance normalisation (affine), LeakyReLU(0.01): nnU-Net's ConvDropoutNormReLU."""
    x = layers_for(x).conv(filters, kernel_size, strides=strides, padding="same", kernel_initializer="he_normal",
                           name=f"{name}_conv")(x)
    x = layers.GroupNormalization(groups=-1, epsilon=EPSILON, name=f"{name}_norm")(x)
    return layers.LeakyReLU(NEGATIVE_SLOPE, name=f"{name}_relu")(x)


def stage_block(x, filters: int, kernel_size, strides, name: str, convolutions: int = 2):
    """A stage: `convolutions` conv-norm-LeakyReLU, the first with `strides` (nnU-Net's StackedConvBlocks)."""
    for i in range(1, convolutions + 1):
        x = conv_norm_relu(x, filters, kernel_size, strides if i == 1 else 1, f"{name}{i}")
    return x


def build_nnunet(input_shape: tuple[int | None, ...] = (None, None, 1), num_classes: int = 1, *,
                 strides=STRIDES, kernel_sizes=KERNEL_SIZES, filters: int = 32, max_filters: int = 512,
                 convolutions_per_stage: int = 2, deep_supervision: bool = True, name: str = "nnunet") -> keras.Model:
    """Build nnU-Net's PlainConvUNet (module docstring), 2D or 3D by `input_shape`, sized by its stage lists;
    stage i has min(filters * 2**i, `max_filters`) channels (nnU-Net: 512 in 2D, 320 in 3D)."""
    dims = spatial_dims(input_shape)
    strides = stage_pairs("strides", strides, dims=dims)
    if len(strides) < 2:
        raise ConfigError(f"strides must list 2 stages or more (an encoder stage and the bottleneck). "
                          f"Received: strides={list(strides)}")
    kernel_sizes = stage_pairs("kernel_sizes", kernel_sizes, len(strides), dims)
    for argument, value in (("filters", filters), ("max_filters", max_filters),
                            ("convolutions_per_stage", convolutions_per_stage)):
        if value < 1:
            raise ConfigError(f"{argument} must be >= 1. Received: {argument}={value}")
    for axis, size in enumerate(input_shape[:-1]):
        check_strided_input_size(size, strides, axis, dims)
    channels = [min(filters * 2**i, max_filters) for i in range(len(strides))]

    inputs = keras.Input(shape=input_shape, name="image")
    x, skips = inputs, []
    for i, (width, kernel, stride) in enumerate(zip(channels, kernel_sizes, strides)):
        x = stage_block(x, width, kernel, stride, f"enc{i}_conv", convolutions_per_stage)
        skips.append(x)
    stages = []  # the decoder's stages, the deepest first
    for i in reversed(range(len(strides) - 1)):
        x = layers_for(x).conv_transpose(channels[i], strides[i + 1], strides=strides[i + 1],
                                         kernel_initializer="he_normal", name=f"dec{i}_up")(x)
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[i]])
        x = stage_block(x, channels[i], kernel_sizes[i], 1, f"dec{i}_conv", convolutions_per_stage)
        stages.append(x)
    return supervised_model(inputs, stages[::-1], num_classes, deep_supervision, name)


def describe_nnunet(model: keras.Model, strides, filters: int, max_filters: int) -> str:
    """One line saying what was built: 'nnU-Net PlainConvUNet 6 stages, 32-512 filters: 20.6M params (...)',
    '3D nnU-Net PlainConvUNet ...' for a volume input."""
    stages = len(strides)
    top = min(filters * 2 ** (stages - 1), max_filters)
    volume = "3D " if len(model.inputs[0].shape) == 5 else ""
    return f"{volume}nnU-Net PlainConvUNet {stages} stages, {filters}-{top} filters: {count_line(model)}"
