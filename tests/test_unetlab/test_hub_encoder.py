"""keras-hub backbones as encoders (`model.encoder=hub:PRESET`): presets saved here from small random
backbones, as `save_to_preset` writes them (the pretrained ones come from Kaggle, out of this machine's reach)."""

import sys

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")  # the test extra installs it (Makefile): CI never skips

from unetlab.errors import ConfigError  # noqa: E402
from unetlab.models.encoder_unet import build_encoder_unet  # noqa: E402
from unetlab.models.hub_encoder import hub_backbone, input_normalisation, pyramid  # noqa: E402

DECODER = (8, 8, 8, 8, 8)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Preset directories: a ResNet-18-shaped backbone (narrow) with an image converter of ImageNet's mean and
    std, and a DenseNet without one."""
    root = tmp_path_factory.mktemp("presets")
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 16, 16, 32],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        use_pre_activation=False)
    resnet.save_to_preset(root / "resnet")
    keras_hub.layers.ResNetImageConverter(scale=[1 / (255 * s) for s in STD],
                                          offset=[-m / s for m, s in zip(MEAN, STD)]).save_to_preset(root / "resnet")
    keras_hub.models.DenseNetBackbone(stackwise_num_repeats=[1, 1, 1, 1], growth_rate=4).save_to_preset(root / "densenet")
    return {name: f"hub:{root / name}" for name in ("resnet", "densenet")}


@pytest.mark.parametrize("name", ["resnet", "densenet"])
@pytest.mark.parametrize("height, width", [(224, 224), (160, 192)])
def test_pyramid_levels_are_placed_at_the_stride_their_output_has(presets, name, height, width):
    """ResNet's and DenseNet's levels P2-P5 are strides 4-32 (no stride-2 skip), at any input size."""
    model = hub_backbone(presets[name], 1)
    levels = pyramid(model, presets[name])
    assert sorted(levels) == [4, 8, 16, 32]
    for stride, tensor in levels.items():
        shape = keras.Model(model.inputs, tensor).compute_output_spec(keras.KerasTensor((1, height, width, 1))).shape
        assert shape[1:3] == (height // stride, width // stride), (stride, shape)


def test_preset_weights_are_copied_and_the_first_kernel_summed_for_one_channel(presets):
    """encoder_weights=preset: every backbone weight as the preset has it, bit for bit, but the first
    convolution's kernel, summed over the RGB channels for a gray input (segmentation_models_pytorch's rule)."""
    source = keras_hub.models.Backbone.from_preset(presets["resnet"][len("hub:"):])
    model = build_encoder_unet((None, None, 1), 1, encoder=presets["resnet"], encoder_weights="preset",
                               decoder_filters=DECODER)
    encoder_weights = model.get_layer("encoder").get_weights()
    assert len(encoder_weights) == len(source.get_weights())
    differing = [i for i, (a, b) in enumerate(zip(source.get_weights(), encoder_weights)) if a.shape != b.shape]
    assert len(differing) == 1
    first = differing[0]
    np.testing.assert_array_equal(encoder_weights[first], source.get_weights()[first].sum(axis=2, keepdims=True))
    for i, (a, b) in enumerate(zip(source.get_weights(), encoder_weights)):
        if i != first:
            np.testing.assert_array_equal(a, b)
    random = build_encoder_unet((None, None, 1), 1, encoder=presets["resnet"], encoder_weights="none",
                                decoder_filters=DECODER)
    kernels = [(a, b) for a, b in zip(random.get_layer("encoder").get_weights(), encoder_weights) if a.ndim == 4]
    assert not any(np.array_equal(a, b) for a, b in kernels)  # none: the preset's are not a fresh model's


def test_a_preset_saved_for_one_image_size_gives_its_weights_too(tmp_path):
    """A preset saved with a fixed image_shape (as many pretrained ones are): the any-size backbone gets its
    weights, not a fresh model's."""
    fixed = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 16, 16, 32],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(64, 64, 3))
    fixed.save_to_preset(tmp_path / "fixed")
    model = build_encoder_unet((None, None, 3), 1, encoder=f"hub:{tmp_path / 'fixed'}", encoder_weights="preset",
                               decoder_filters=DECODER)
    for a, b in zip(fixed.get_weights(), model.get_layer("encoder").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.input_shape == (None, None, None, 3)


def test_three_channel_preset_weights_are_the_presets_own(presets):
    model = build_encoder_unet((64, 64, 3), 2, encoder=presets["densenet"], encoder_weights="preset",
                               decoder_filters=DECODER)
    source = keras_hub.models.Backbone.from_preset(presets["densenet"][len("hub:"):])
    for a, b in zip(source.get_weights(), model.get_layer("encoder").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.output_shape == (None, 64, 64, 2)


def test_the_presets_image_converter_is_the_models_first_layer(presets):
    """Images in [0, 1] reach the backbone as the preset's converter maps 0-255 pixels (x * scale + offset);
    a preset without a converter passes them as they are."""
    converter = keras_hub.layers.ImageConverter.from_preset(presets["resnet"][len("hub:"):])
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    model = build_encoder_unet((None, None, 3), 1, encoder=presets["resnet"], decoder_filters=DECODER)
    normalised = np.asarray(model.get_layer("encoder_preprocessing")(images))
    np.testing.assert_allclose(normalised, np.asarray(converter(images * 255)), atol=1e-4)
    mean, std = input_normalisation(presets["densenet"], 1)
    assert mean.tolist() == [0.0] and std.tolist() == [1.0]
    gray_mean, gray_std = input_normalisation(presets["resnet"], 1)
    assert gray_mean[0] == pytest.approx(np.mean(MEAN), abs=1e-6) and gray_std[0] == pytest.approx(np.mean(STD), abs=1e-6)


def test_weights_saved_from_the_backbone_load_by_path(presets, tmp_path):
    """encoder_weights=PATH.weights.h5 works for a hub encoder as for keras.applications ones."""
    saved = hub_backbone(presets["resnet"], 1)
    saved.save_weights(tmp_path / "resnet.weights.h5")
    model = build_encoder_unet((None, None, 1), 1, encoder=presets["resnet"],
                               encoder_weights=str(tmp_path / "resnet.weights.h5"), decoder_filters=DECODER)
    for a, b in zip(saved.get_weights(), model.get_layer("encoder").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_presets_and_weights_are_one_line_errors_naming_the_key(presets, tmp_path, monkeypatch):
    not_a_preset = tmp_path / "empty"
    not_a_preset.mkdir()
    keras_hub.models.BertBackbone(vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=4,
                                  max_sequence_length=8).save_to_preset(tmp_path / "bert")
    keras_hub.models.MiTBackbone(  # built for one image size
        layerwise_depths=[1] * 4, num_layers=4, layerwise_num_heads=[1] * 4, layerwise_sr_ratios=[8, 4, 2, 1],
        max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3, 3, 3], layerwise_strides=[4, 2, 2, 2],
        hidden_dims=[4, 4, 8, 8], image_shape=(64, 64, 3)).save_to_preset(tmp_path / "mit")
    cases = {
        f"hub:{not_a_preset}": ("model.encoder=", "not a keras-hub preset directory (no config.json"),
        "hub:": ("model.encoder=", "PRESET is a keras-hub preset directory"),
        f"hub:{tmp_path / 'bert'}": ("model.encoder=", "a BertBackbone has no pyramid_outputs"),
        f"hub:{tmp_path / 'mit'}": ("model.encoder=", "a MiTBackbone cannot be built for images of any size"),
        f"hub:{tmp_path / 'missing' / 'preset'}": ("model.encoder=", "keras-hub could not load the preset"),
    }
    for encoder, expected in cases.items():
        with pytest.raises(ConfigError) as error:
            build_encoder_unet((None, None, 1), 1, encoder=encoder, decoder_filters=DECODER)
        message = str(error.value)
        assert "\n" not in message and all(part in message for part in expected), message
    with pytest.raises(ConfigError, match="encoder_weights=imagenet is for keras.applications encoders"):
        build_encoder_unet((None, None, 1), 1, encoder=presets["resnet"], encoder_weights="imagenet")
    with pytest.raises(ConfigError, match="encoder_weights=preset is for hub:PRESET encoders"):
        build_encoder_unet((None, None, 1), 1, encoder="mobilenetv2", encoder_weights="preset")
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"needs keras-hub, which could not be imported \(no module keras_hub\): "
                                          r"pip install --no-deps keras-hub; pip install tokenizers sentencepiece regex"):
        build_encoder_unet((None, None, 1), 1, encoder=presets["resnet"])
