"""keras-hub backbones as the contracting path of `unetlab.models.encoder_unet` (`model.encoder=hub:PRESET`).

Any keras-hub backbone with `pyramid_outputs` (a `FeaturePyramidBackbone`: ResNet, EfficientNet, DenseNet,
CSPNet ...) that takes images of any size serves (MiT does not: its patch embeddings are built for one size):
its pyramid levels are the skips, each placed at the stride its output has, found by a probe rather than
read from the level's name; the deepest must be stride 32, and strides without a level (ResNet's and
DenseNet's 2: their levels are P2-P5, strides 4-32) get no skip, as ConvNeXt's 2 in `BACKBONES`.

PRESET is what `keras_hub.models.Backbone.from_preset` takes: a local preset directory (what
`backbone.save_to_preset(DIR)` writes: config.json and model.weights.h5), or a preset name or a
kaggle:// or hf:// handle, which keras-hub downloads (the real loading path; it needs the network). The
backbone is rebuilt from the preset's config for the model's input channels; `encoder_weights=preset` copies
the preset's RGB weights into it, adapted as for keras.applications backbones (`encoder_unet.adapt_weight`).

Inputs are images in [0, 1]; where the preset has an image converter (image_converter.json: what its
weights were trained on, `scale` and `offset` of 0-255 pixels), the model's first layer applies it; a
backbone saved alone has none, and takes the [0, 1] images as they are.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from ..errors import ConfigError

HUB = "hub:"  # model.encoder=hub:PRESET
PROBE_SIZE = 256  # the input side at which each pyramid level's stride is measured


def is_hub(encoder: str) -> bool:
    """Whether `encoder` names a keras-hub preset (`hub:PRESET`)."""
    return str(encoder).startswith(HUB)


def display_name(encoder: str) -> str:
    """`encoder` for a run name or a log line: a hub preset by its folder's (or handle's) last part."""
    return f"{HUB}{Path(str(encoder)[len(HUB):]).name}" if is_hub(encoder) else str(encoder)


def _keras_hub():
    try:
        import keras_hub
    except ImportError as error:
        missing = getattr(error, "name", None) or "keras_hub"
        raise ConfigError(f"model.encoder=hub:PRESET needs keras-hub, which could not be imported (no module "
                          f"{missing}): pip install --no-deps keras-hub; pip install tokenizers sentencepiece regex "
                          "(docs/models.md: beside tensorflow-cpu), or pip install 'unetlab[hub]'") from None
    return keras_hub


def _preset(encoder: str) -> str:
    preset = str(encoder)[len(HUB):]
    if not preset:
        raise ConfigError("model.encoder=hub:PRESET: PRESET is a keras-hub preset directory, name or handle. "
                          f"Received: model.encoder={encoder!r}")
    local = Path(preset).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise ConfigError(f"model.encoder={encoder}: {local} is not a keras-hub preset directory (no config.json; "
                          "backbone.save_to_preset(DIR) writes one)")
    return str(local) if local.exists() else preset


def _from_preset(encoder: str, load_weights: bool) -> keras.Model:
    hub = _keras_hub()
    try:
        return hub.models.Backbone.from_preset(_preset(encoder), load_weights=load_weights)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - keras-hub raises ValueError, FileNotFoundError or a download error
        raise ConfigError(f"model.encoder={encoder}: keras-hub could not load the preset "
                          f"({' '.join(str(error).split())[:200]})") from None


def hub_backbone(encoder: str, channels: int, load_weights: bool = False) -> keras.Model:
    """The preset's backbone for `channels` inputs of any size, random; with `load_weights`, the preset's own
    model as saved, with its weights (its input shape and channels: `encoder_unet` copies them over)."""
    preset_model = _from_preset(encoder, load_weights)
    if not getattr(preset_model, "pyramid_outputs", None):
        raise ConfigError(f"model.encoder={encoder}: a {type(preset_model).__name__} has no pyramid_outputs "
                          "(keras-hub's ResNet, EfficientNet, DenseNet and CSPNet backbones have them)")
    config = preset_model.get_config()
    key = next((k for k in ("image_shape", "input_shape") if k in config), None)
    if key is None:
        raise ConfigError(f"model.encoder={encoder}: a {type(preset_model).__name__} takes no image_shape")
    if load_weights:
        return preset_model
    try:
        return type(preset_model).from_config({**config, key: (None, None, channels)})
    except (TypeError, ValueError) as error:  # MiT: its patch embeddings need the image size
        raise ConfigError(f"model.encoder={encoder}: a {type(preset_model).__name__} cannot be built for images of "
                          f"any size, which the encoder U-Net takes ({' '.join(str(error).split())[:120]})") from None


def pyramid(model: keras.Model, encoder: str) -> dict[int, keras.KerasTensor]:
    """The backbone's pyramid outputs by stride (of 2-32); one-line error unless the deepest is stride 32."""
    outputs = list(model.pyramid_outputs.values())
    probe = keras.Model(model.inputs, outputs)
    channels = model.input_shape[-1]
    specs = keras.tree.flatten(probe.compute_output_spec(keras.KerasTensor((1, PROBE_SIZE, PROBE_SIZE, channels))))
    by_stride = {}
    for spec, tensor in zip(specs, outputs):
        stride = PROBE_SIZE // spec.shape[1]
        if stride * spec.shape[1] != PROBE_SIZE or stride & (stride - 1):
            raise ConfigError(f"model.encoder={encoder}: a pyramid level is {spec.shape[1]} wide for a {PROBE_SIZE}-"
                              "pixel input, not a power-of-two fraction of it (its stem pads 'valid'?)")
        by_stride[stride] = tensor
    if max(by_stride) != 32:
        raise ConfigError(f"model.encoder={encoder}: its pyramid_outputs reach stride {max(by_stride)}; the "
                          "encoder U-Net's decoder starts at stride 32")
    return {stride: tensor for stride, tensor in by_stride.items() if 2 <= stride <= 32}


def input_normalisation(encoder: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per channel of images in [0, 1] that give the preset's image converter's output (its
    `scale` and `offset` of 0-255 pixels); (0, 1) where the preset has none."""
    preset = _preset(encoder)
    if Path(preset).is_dir() and not (Path(preset) / "image_converter.json").is_file():
        return np.zeros(channels), np.ones(channels)
    try:
        converter = _keras_hub().layers.ImageConverter.from_preset(preset)
    except FileNotFoundError:  # a downloaded preset without image_converter.json
        return np.zeros(channels), np.ones(channels)
    except Exception as error:  # noqa: BLE001 - keras-hub's ValueError or a download error
        raise ConfigError(f"model.encoder={encoder}: keras-hub could not load the preset's image converter "
                          f"({' '.join(str(error).split())[:200]})") from None
    scale = np.broadcast_to(np.asarray(1.0 if converter.scale is None else converter.scale, float), (3,))
    offset = np.broadcast_to(np.asarray(0.0 if converter.offset is None else converter.offset, float), (3,))
    std = 1 / (255 * scale)
    mean = -offset * std
    if channels != 3:
        return np.full(channels, mean.mean()), np.full(channels, std.mean())
    return mean, std
