"""A U-Net whose contracting path is a `keras.applications` backbone (the encoder-decoder of
segmentation_models, and of Iglovikov and Shvets 2018, "TernausNet", arXiv:1801.05746).

The skips are the backbone's features at strides 2, 4, 8, 16 and 32, its stages' outputs: the last
layer of each stage, named per backbone in `BACKBONES` (`skip_layers`; docs/models.md lists them) by the
start of its name, or, where Keras names that layer by a global counter (MobileNetV3's hard-swish
activations are `activation`, `activation_17` ... by how many were built before in the process), as
"after:PREFIX": the one layer that takes the output of the layer PREFIX names (`after:conv_1_bn`).

The decoder is the standard one: from the stride-32 features, five stages of x2 upsampling (nearest),
the concatenation of the skip of that stride (none at full resolution, nor where a backbone has no layer
at a stride, as ConvNeXt at 2), and two 3x3 convolutions with batch norm and ReLU of `decoder_filters`
channels (default 256, 128, 64, 32, 16); then the 1x1 head of `unetlab.models.unet`.

Inputs are images in [0, 1] (the pipeline's `normalize=scale`); the model's first layer maps them to
what the backbone was trained on (`PREPROCESSING`: keras' caffe, tf or torch modes), and the backbones'
own preprocessing layers are left out where Keras allows it, so nothing is applied twice (EfficientNet
B0-B7 keep theirs: they get 0-255). ResNet v1 expects BGR: its first convolution's imagenet kernel is
reversed along the input channels instead of flipping every image. Any number of input channels: the
backbone is built for them and RGB weights are adapted (`adapt_weight`, as segmentation_models_pytorch
adapts the first convolution: summed for one channel; cycled and scaled by 3/C for C channels).

`encoder_weights`: "none" (random), "imagenet" (Keras downloads the RGB weights) or the path of a
`.weights.h5` file saved from the same backbone (`backbone(...).save_weights`), for the model's
channels or for 3 (then adapted). Height and width must be multiples of 32.

`encoder="hub:PRESET"` takes a keras-hub backbone instead (`unetlab.models.hub_encoder`: its
`pyramid_outputs` are the skips, its preset's image converter the preprocessing), with
`encoder_weights` "none", "preset" (the preset's own weights) or a `.weights.h5` file.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

import keras
import numpy as np
from keras import layers

from ..errors import ConfigError, DataError
from ..geometry import ENCODER_STRIDES, check_encoder_input_size
from .heads import count_line, supervised_model
from .hub_encoder import display_name, hub_backbone, input_normalisation, is_hub, pyramid

STRIDES = ENCODER_STRIDES
DECODER_FILTERS = (256, 128, 64, 32, 16)
_RESNET_V2_BLOCKS = {"50": (3, 4, 6), "101": (3, 4, 23), "152": (3, 8, 36)}  # blocks of stages 2-4
# name: (keras.applications constructor, the input it expects (a key of PREPROCESSING), and per stride of
# STRIDES the skip: the last layer whose name starts with this, or with AFTER + this the one layer that takes
# that layer's output (None: no skip at that stride)). The skips are the stages' outputs, as
# segmentation_models(_pytorch) takes them, not the expansion layers that open the next stage at the same stride.
AFTER = "after:"
BACKBONES = {
    **{f"resnet{n}": (f"ResNet{n}", "caffe", ("conv1_relu", "conv2_", "conv3_", "conv4_", "conv5_"))
       for n in ("50", "101", "152")},
    **{f"resnet{n}v2": (f"ResNet{n}V2", "tf", ("conv1_conv", *(f"conv{stage}_block{count}_1_relu" for stage, count
                                                                   in zip((2, 3, 4), blocks)), "post_relu"))
       for n, blocks in _RESNET_V2_BLOCKS.items()},
    **{f"efficientnetb{i}": (f"EfficientNetB{i}", "0-255", ("stem_activation", "block2", "block3", "block5", "block7"))
       for i in range(8)},
    **{f"efficientnetv2{size}": (f"EfficientNetV2{size.upper()}", "tf", ("block1", "block2", "block3", "block5", "block6"))
       for size in ("b0", "b1", "b2", "b3", "s")},
    "mobilenetv2": ("MobileNetV2", "tf", ("expanded_conv_project_BN", "block_2_", "block_5_", "block_12_", "out_relu")),
    # MobileNetV3 (alpha 1, not minimalistic) rescales to [-1, 1] itself; its stem's and last 1x1 convolution's
    # hard swish are unnamed Activation layers, hence "after:". Stages as segmentation_models_pytorch's
    # timm-mobilenetv3 encoders cut them (16, 16, 24, 48, 576 and 16, 24, 40, 112, 960 channels).
    "mobilenetv3small": ("MobileNetV3Small", "tf", (f"{AFTER}conv_bn", "expanded_conv_project_bn",
                                                    "expanded_conv_2_add", "expanded_conv_7_add", f"{AFTER}conv_1_bn")),
    "mobilenetv3large": ("MobileNetV3Large", "tf", ("expanded_conv_add", "expanded_conv_2_add", "expanded_conv_5_add",
                                                    "expanded_conv_11_add", f"{AFTER}conv_1_bn")),
    **{f"convnext{size}": (f"ConvNeXt{size.title()}", "torch", (None, *(f"convnext_{size}_stage_{i}" for i in range(4))))
       for size in ("tiny", "small")},
    "densenet121": ("DenseNet121", "torch", ("conv1_relu", "conv2_", "conv3_", "conv4_", "relu")),
}
OWN_PREPROCESSING = ("EfficientNetV2", "MobileNetV3", "ConvNeXt")  # built without it (include_preprocessing)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # RGB, of images in [0, 1]
PREPROCESSING = {  # (mean, std) per RGB channel of images in [0, 1]: the model's first layer is (x - mean) / std
    "caffe": (IMAGENET_MEAN, (1 / 255,) * 3),  # 255 x - the mean pixel
    "tf": ((0.5,) * 3, (0.5,) * 3),  # [-1, 1]
    "torch": (IMAGENET_MEAN, IMAGENET_STD),
    "0-255": ((0.0,) * 3, (1 / 255,) * 3),  # the backbone rescales and normalises itself
}


def check_encoder(encoder: str) -> tuple[str, str, tuple]:
    """(constructor name, preprocessing mode, skips) of `encoder`, or a one-line error naming the closest ones."""
    if encoder not in BACKBONES:
        close = difflib.get_close_matches(str(encoder).lower(), BACKBONES, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"one of {', '.join(BACKBONES)}"
        raise ConfigError(f"encoder must be a known backbone: {hint} Received: encoder={encoder!r}")
    return BACKBONES[encoder]


def backbone(encoder: str, channels: int, weights: str | None = None) -> keras.Model:
    """The bare backbone (no top, no preprocessing layers where Keras can leave them out) for `channels`
    inputs of any multiple of 32; `weights` None or "imagenet" ("hub:PRESET": keras-hub's, random)."""
    if is_hub(encoder):
        return hub_backbone(encoder, channels)
    constructor, _, _ = check_encoder(encoder)
    extra = {"include_preprocessing": False} if constructor.startswith(OWN_PREPROCESSING) else {}
    with warnings.catch_warnings():  # any channel count is meant: RGB weights are adapted (module docstring)
        warnings.filterwarnings("ignore", message="This model usually expects")
        warnings.filterwarnings("ignore", message="`input_shape` is undefined or non-square")  # MobileNetV3's
        return getattr(keras.applications, constructor)(include_top=False, weights=weights,
                                                        input_shape=(None, None, channels), **extra)


def skip_layers(model: keras.Model, encoder: str) -> list[str | None]:
    """The names of the layers of the backbone `model` whose outputs are the skips at `STRIDES`
    (`BACKBONES`: the last layer of each named stage, or the one layer after it for "after:";
    None where there is none)."""
    names = [layer.name for layer in model.layers]
    found = []
    for prefix in check_encoder(encoder)[2]:
        after = bool(prefix) and prefix.startswith(AFTER)
        prefix = prefix[len(AFTER):] if after else prefix
        matches = [name for name in names if prefix and name.startswith(prefix)]
        name = matches[-1] if matches else None
        found.append(_follower(model, name) if after and name else name)
    return found


def _follower(model: keras.Model, name: str) -> str | None:
    """The name of the one layer of `model` that takes the output of the layer `name` (None unless exactly one)."""
    output = model.get_layer(name).output
    followers = [layer.name for layer in model.layers if not isinstance(layer, layers.InputLayer)
                 and any(tensor is output for tensor in keras.tree.flatten(layer.input))]
    return followers[0] if len(followers) == 1 else None


def feature_shapes(model: keras.Model, names: list[str | None], height: int, width: int) -> list[tuple | None]:
    """The output shapes (batch included) of the layers `names` of `model` for a `height` x `width` input."""
    chosen = [name for name in names if name]
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in chosen])
    specs = probe.compute_output_spec(keras.KerasTensor((1, height, width, model.input_shape[-1])))
    shapes = dict(zip(chosen, (tuple(spec.shape) for spec in specs)))
    return [shapes.get(name) for name in names]


def adapt_weight(value: np.ndarray, shape: tuple) -> np.ndarray:
    """An RGB backbone's weight for `shape`, where only the input channels differ: a first kernel (kh, kw,
    3, out) summed for 1 channel, else cycled over C channels and scaled by 3/C; a per-channel statistic
    (3,) of an input normalisation averaged for 1, cycled for more."""
    if value.ndim == 4:
        channels = shape[2]
        if channels == 1:
            return value.sum(axis=2, keepdims=True)
        return value[:, :, [i % 3 for i in range(channels)], :] * (3 / channels)
    channels = shape[0]
    return np.full(shape, value.mean(), value.dtype) if channels == 1 else value[[i % 3 for i in range(channels)]]


def load_encoder_weights(model: keras.Model, encoder: str, weights: str) -> None:
    """Load `weights` (module docstring) into the backbone `model`."""
    if weights in (None, "none"):
        return
    if weights == "imagenet" and is_hub(encoder):
        raise ConfigError(f"model.encoder_weights=imagenet is for keras.applications encoders: model.encoder={encoder} "
                          "takes preset (the preset's own weights), none or a .weights.h5 file")
    if weights == "preset" and not is_hub(encoder):
        raise ConfigError(f"model.encoder_weights=preset is for hub:PRESET encoders: model.encoder={encoder} takes "
                          "imagenet, none or a .weights.h5 file")
    if weights == "preset":
        _transfer(hub_backbone(encoder, 3, load_weights=True), model)
        return
    if weights == "imagenet":
        mode = check_encoder(encoder)[1]
        try:
            source = backbone(encoder, 3, "imagenet")
        except Exception as error:  # noqa: BLE001 - keras.utils.get_file raises a bare Exception when offline
            raise DataError(f"encoder_weights=imagenet: Keras could not fetch the {encoder} weights "
                            f"({' '.join(str(error).split())[:200]}); on a machine without internet, save them "
                            f"where there is one and give encoder_weights=PATH.weights.h5") from None
        if mode == "caffe":  # trained on BGR images: reverse the first kernel's input channels instead
            first = next(layer for layer in source.layers if isinstance(layer, layers.Conv2D))
            kernel, *rest = first.get_weights()
            first.set_weights([kernel[:, :, ::-1, :], *rest])
        _transfer(source, model)
        return
    path = Path(weights)
    if not path.is_file() or not path.name.endswith(".h5"):
        raise ConfigError(f"encoder_weights={weights}: no such .weights.h5 file (expected the weights of a {encoder} "
                          f"backbone, or imagenet or none)")
    try:
        model.load_weights(path)
        return
    except ValueError:
        pass  # perhaps saved for 3 channels
    source = backbone(encoder, 3)
    try:
        source.load_weights(path)
    except ValueError as error:
        raise ConfigError(f"encoder_weights={weights}: not the weights of a {encoder} backbone for "
                          f"{model.input_shape[-1]} or 3 input channels ({' '.join(str(error).split())[:200]})") from None
    _transfer(source, model)


def _transfer(source: keras.Model, target: keras.Model) -> None:
    """Copy an RGB backbone's weights into the same backbone for other input channels (`adapt_weight`)."""
    values = [w if w.shape == tuple(v.shape) else adapt_weight(w, tuple(v.shape))
              for w, v in zip(source.get_weights(), target.weights)]
    target.set_weights(values)


def encoder_skips(model: keras.Model, encoder: str) -> dict[int, keras.KerasTensor]:
    """The backbone `model`'s skip tensors by stride (of `STRIDES`, finest first; none where it has none)."""
    if is_hub(encoder):
        return dict(sorted(pyramid(model, encoder).items()))
    return {stride: model.get_layer(name).output for stride, name in zip(STRIDES, skip_layers(model, encoder)) if name}


def encoder_normalisation(encoder: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per input channel that map images in [0, 1] to what the backbone was trained on (`PREPROCESSING`
    of its mode; a keras-hub preset's image converter); an RGB statistic averaged for other channel counts."""
    if is_hub(encoder):
        return input_normalisation(encoder, channels)
    mean, std = (np.array(v) for v in PREPROCESSING[check_encoder(encoder)[1]])
    if channels != 3:
        return np.full(channels, mean.mean()), np.full(channels, std.mean())
    return mean, std


def build_encoder_unet(input_shape: tuple[int | None, int | None, int] = (None, None, 3), num_classes: int = 1, *,
                       encoder: str = "resnet50", encoder_weights: str = "none",
                       decoder_filters: tuple[int, ...] = DECODER_FILTERS, deep_supervision: bool = False,
                       name: str = "encoder_unet") -> keras.Model:
    """Build an encoder U-Net (module docstring): `encoder` a key of `BACKBONES`; `deep_supervision` adds a head
    on every decoder stage below full resolution (`unetlab.models.heads.DeepSupervision`)."""
    for size in input_shape[:2]:
        check_encoder_input_size(size)
    decoder_filters = tuple(decoder_filters)
    if len(decoder_filters) != len(STRIDES) or min(decoder_filters) < 1:
        raise ConfigError(f"decoder_filters must be {len(STRIDES)} channel counts >= 1, one per decoder stage. "
                          f"Received: decoder_filters={list(decoder_filters)}")
    channels = input_shape[-1]
    encoder_model = backbone(encoder, channels)
    load_encoder_weights(encoder_model, encoder, encoder_weights)
    skip_outputs = encoder_skips(encoder_model, encoder)
    strides = list(skip_outputs)
    features = keras.Model(encoder_model.inputs, list(skip_outputs.values()), name="encoder")
    mean, std = encoder_normalisation(encoder, channels)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Normalization(mean=mean.tolist(), variance=(std**2).tolist(), name="encoder_preprocessing")(inputs)
    skips = dict(zip(strides, features(x)))
    x = skips[32]
    stages = []  # the decoder's stages, the coarsest first
    for stage, filters in enumerate(decoder_filters):
        stride = 2 ** (len(STRIDES) - 1 - stage)
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"decoder{stage}_up")(x)
        if stride in skips:
            x = layers.Concatenate(name=f"decoder{stage}_concat")([x, skips[stride]])
        for i in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"decoder{stage}_conv{i}")(x)
            x = layers.BatchNormalization(name=f"decoder{stage}_bn{i}")(x)
            x = layers.Activation("relu", name=f"decoder{stage}_relu{i}")(x)
        stages.append(x)
    return supervised_model(inputs, stages[::-1], num_classes, deep_supervision, name)


def describe_encoder_unet(model: keras.Model, encoder: str, encoder_weights: str, frozen_epochs: int = 0) -> str:
    """One line saying what was built: 'U-Net resnet50 encoder (imagenet weights, frozen 5 epochs): 32.5M params
    (...)', 'U-Net hub:resnet_50_imagenet encoder (preset weights): ...'."""
    weights = {"none": "random weights", "imagenet": "imagenet weights", "preset": "preset weights"}.get(
        encoder_weights, f"weights of {Path(str(encoder_weights)).name}")
    frozen = f", frozen {frozen_epochs} epoch{'s' * (frozen_epochs != 1)}" if frozen_epochs else ""
    return f"U-Net {display_name(encoder)} encoder ({weights}{frozen}): {count_line(model)}"
