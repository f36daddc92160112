"""The U-Net of Ronneberger, Fischer and Brox (2015), "U-Net: Convolutional
Networks for Biomedical Image Segmentation", MICCAI, arXiv:1505.04597.

Defaults give the classic Keras U-Net (same padding, UpSampling2D, sigmoid head):
with 1 input channel, 1 class and filters=32 it has 7,846,081 parameters. The
paper's network is `filters=64, padding="valid", upsampling="transpose"` with a
2-class softmax head (572x572 in, 388x388 out).

Options on top, each off by default:

- `block="residual"` (ResUNet; Zhang, Liu and Wang 2018, "Road Extraction by Deep Residual U-Net",
  arXiv:1711.10684, with He et al. 2016's basic block): each level's two 3x3 convolutions get a
  shortcut, the identity or, where the channels change, a 1x1 convolution (with batch norm when the
  block has it), added before the second ReLU;
- `attention=True` (Attention U-Net; Oktay et al. 2018, "Attention U-Net: Learning Where to Look for
  the Pancreas", arXiv:1804.03999, fig. 2): each skip is multiplied by an additive attention gate
  before the concatenation. The gating signal g is the decoder's tensor before it is upsampled; the
  skip x is brought to g's size by a 2x2 stride-2 convolution without bias (W_x), g by a 1x1
  convolution (W_g), both to F_int = half the skip's channels; ReLU of their sum, a 1x1 convolution to
  one channel (psi), a sigmoid, bilinear upsampling x2: the coefficients alpha that scale x.

2D or 3D by the input shape: (H, W, C) builds the network above, (D, H, W, C) its 3D twin (Cicek et al.
2016, "3D U-Net: Learning Dense Volumetric Segmentation from Sparse Annotation", arXiv:1606.06650): 3x3x3
convolutions, 2x2x2 pooling and upsampling, every option alike, but for the attention gate's coefficients,
upsampled by nearest neighbour in 3D (Keras has no trilinear UpSampling3D). The layer classes of each rank
come from `unetlab.models.layers_nd`.

Input-shape rule: with `padding="same"` every spatial size must be divisible by
2**depth; with `padding="valid"` see `unetlab.geometry.unet_output_size`.
Layers are named by level (`enc1_conv2`, `down2`, `up3`, `dec3_conv1`, `head`; `enc1_shortcut`,
`up3_gate_alpha`).
"""

from __future__ import annotations

import keras
from keras import layers

from ..errors import ConfigError
from ..geometry import axis_words, unet_output_size
from ..names import BLOCKS, PADDING, POOLING, UPSAMPLING, check_choice
from .heads import count_line, supervised_model
from .layers_nd import layers_for, spatial_dims


def conv_block(x, filters: int, name: str, *, padding: str = "same", batch_norm: bool = False,
               kernel_initializer: str = "he_normal", block: str = "plain"):
    """Two 3x3 (3x3x3 on a volume) convolutions, each followed by (optional batch norm and) ReLU;
    `block="residual"` adds a shortcut (the identity, or a 1x1 convolution where the channels change) before
    the second ReLU."""
    shortcut, nd = x, layers_for(x)
    for i in (1, 2):
        x = nd.conv(filters, 3, padding=padding, use_bias=not batch_norm, kernel_initializer=kernel_initializer,
                    name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        if i == 2 and block == "residual":
            x = layers.Add(name=f"{name}_add")([x, _shortcut(shortcut, x, filters, name, batch_norm,
                                                             kernel_initializer)])
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _shortcut(x, output, filters: int, name: str, batch_norm: bool, kernel_initializer: str):
    """A residual block's shortcut: `x` centre-cropped to `output`'s size (valid padding), projected by
    a 1x1 convolution (and batch norm) where its channels are not `filters`."""
    nd = layers_for(x)
    crop = (x.shape[1] - output.shape[1]) // 2 if x.shape[1] and output.shape[1] else 0
    if crop:
        x = nd.cropping(crop, name=f"{name}_shortcut_crop")(x)
    if x.shape[-1] == filters:
        return x
    x = nd.conv(filters, 1, use_bias=not batch_norm, kernel_initializer=kernel_initializer, name=f"{name}_shortcut")(x)
    return layers.BatchNormalization(name=f"{name}_shortcut_bn")(x) if batch_norm else x


def attention_gate(x, g, name: str, *, kernel_initializer: str = "he_normal"):
    """Oktay et al. 2018's additive attention gate (module docstring): `x` (the skip, twice `g`'s size)
    scaled by coefficients in [0, 1] computed from `x` and the gating signal `g` (upsampled bilinearly in 2D,
    by nearest neighbour in 3D)."""
    inter, nd = max(1, x.shape[-1] // 2), layers_for(x)
    theta = nd.conv(inter, 2, strides=2, use_bias=False, kernel_initializer=kernel_initializer,
                    name=f"{name}_theta")(x)
    phi = nd.conv(inter, 1, kernel_initializer=kernel_initializer, name=f"{name}_phi")(g)
    f = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta, phi]))
    psi = nd.conv(1, 1, activation="sigmoid", kernel_initializer=kernel_initializer, name=f"{name}_psi")(f)
    alpha = nd.smooth_upsampling(2, name=f"{name}_alpha")(psi)
    return layers.Multiply(name=name)([x, alpha])


def down_block(x, filters: int, name: str, *, pooling: str = "max", kernel_initializer: str = "he_normal"):
    """Halve every spatial size: 2x2 (2x2x2) max pooling or a strided 2x2 (2x2x2) convolution."""
    if pooling == "max":
        return layers_for(x).max_pooling(2, name=name)(x)
    return layers_for(x).conv(filters, 2, strides=2, kernel_initializer=kernel_initializer, name=name)(x)


def upsample(x, filters: int, name: str, *, upsampling: str = "nearest", kernel_initializer: str = "he_normal"):
    """Double every spatial size: `nearest` repeats pixels (UpSampling2D/3D, the classic Keras U-Net);
    `transpose` is the paper's 2x2 (2x2x2) up-convolution to `filters` channels."""
    if upsampling == "nearest":
        return layers_for(x).upsampling(2, name=name)(x)
    return layers_for(x).conv_transpose(filters, 2, strides=2, kernel_initializer=kernel_initializer, name=name)(x)


def up_block(x, skip, filters: int, name: str, *, upsampling: str = "nearest",
             kernel_initializer: str = "he_normal", attention: bool = False):
    """`upsample`, then concatenate the (centre-cropped, with `attention` gated) skip tensor."""
    gating = x
    x = upsample(x, filters, name, upsampling=upsampling, kernel_initializer=kernel_initializer)
    crop = (skip.shape[1] - x.shape[1]) // 2 if skip.shape[1] and x.shape[1] else 0
    if crop:
        skip = layers_for(skip).cropping(crop, name=f"{name}_crop")(skip)
    if attention:
        skip = attention_gate(skip, gating, f"{name}_gate", kernel_initializer=kernel_initializer)
    return layers.Concatenate(name=f"{name}_concat")([skip, x])


def build_unet(input_shape: tuple[int | None, ...] = (None, None, 1), num_classes: int = 1, *,
               depth: int = 4, filters: int = 32, batch_norm: bool = False, dropout: float = 0.0,
               pooling: str = "max", upsampling: str = "nearest", padding: str = "same",
               kernel_initializer: str = "he_normal", block: str = "plain", attention: bool = False,
               deep_supervision: bool = False, name: str = "unet") -> keras.Model:
    """Build a U-Net, 2D for an `input_shape` (H, W, C), 3D for (D, H, W, C); `num_classes=1` gives a
    sigmoid head, K > 1 a K-way softmax; `block` and `attention` as in the module docstring;
    `deep_supervision` adds a head on every lower decoder level (`unetlab.models.heads.DeepSupervision`,
    same padding only).

    The head always computes in float32, so the model is safe under mixed precision.
    """
    check_options(num_classes, depth=depth, filters=filters, dropout=dropout, pooling=pooling, upsampling=upsampling,
                  padding=padding, block=block, attention=attention, deep_supervision=deep_supervision)
    dims = spatial_dims(input_shape)
    for size in input_shape[:-1]:
        if size is not None:
            unet_output_size(size, depth, padding)
    if padding == "valid" and None in input_shape[:-1]:
        raise ConfigError(f"padding='valid' needs a fixed input {axis_words(dims)} (skips are cropped). "
                          f"Received: input_shape={tuple(input_shape)}")

    common = dict(batch_norm=batch_norm, padding=padding, kernel_initializer=kernel_initializer, block=block)
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
    stages = []  # the decoder's levels, the deepest first
    for level in reversed(range(depth)):
        x = up_block(x, skips[level], filters * 2**level, f"up{level}", upsampling=upsampling,
                     kernel_initializer=kernel_initializer, attention=attention)
        x = conv_block(x, filters * 2**level, f"dec{level}", **common)
        stages.append(x)
    return supervised_model(inputs, stages[::-1], num_classes, deep_supervision, name)


def check_options(num_classes: int, *, depth: int, filters: int, dropout: float, pooling: str, upsampling: str,
                  padding: str, block: str, attention: bool, deep_supervision: bool = False) -> None:
    """The U-Net family's options, each a one-line ConfigError naming the argument."""
    check_choice("pooling", pooling, POOLING)
    check_choice("upsampling", upsampling, UPSAMPLING)
    check_choice("padding", padding, PADDING)
    check_choice("block", block, BLOCKS)
    for argument, value in (("attention", attention), ("deep_supervision", deep_supervision)):
        if not isinstance(value, bool):
            raise ConfigError(f"{argument} must be true or false. Received: {argument}={value!r}")
    if deep_supervision and padding != "same":
        raise ConfigError(f"deep_supervision needs padding='same' (a valid-padding decoder level is no whole "
                          f"fraction of the labels). Received: padding={padding!r}")
    for argument, value in (("depth", depth), ("filters", filters), ("num_classes", num_classes)):
        if value < 1:
            raise ConfigError(f"{argument} must be >= 1. Received: {argument}={value}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1). Received: dropout={dropout}")


TITLES = {"unet": "U-Net", "unetpp": "U-Net++"}  # the family of a model, by its Keras name, for `describe`


def describe(model: keras.Model, depth: int, filters: int, block: str = "plain", attention: bool = False) -> str:
    """One line saying what was built: 'U-Net depth=4 filters=32: 7.8M params', 'Residual Attention U-Net ...',
    '3D U-Net ...' (a volume input), 'U-Net++ ...' (the family from the model's name, `TITLES`)."""
    volume = len(model.inputs[0].shape) == 5
    words = [word for word, on in (("Residual", block == "residual"), ("Attention", attention), ("3D", volume)) if on]
    family = " ".join([*words, TITLES.get(model.name, model.name)])
    return f"{family} depth={depth} filters={filters}: {count_line(model)}"


def layer_table(model: keras.Model) -> str:
    """Keras' layer table of `model` (layers, output shapes, parameters), 120 characters wide."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=120)
    return "\n".join(lines) + "\n"
