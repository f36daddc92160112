"""unetlab.models.encoder_unet: every backbone's skips at strides 2-32, the decoder's parameters worked out
by hand, weights loaded bit for bit from a file (and adapted from RGB), and one-line refusals."""

import keras
import numpy as np
import pytest

from unetlab.errors import ConfigError
from unetlab.models.encoder_unet import (BACKBONES, STRIDES, adapt_weight, backbone, build_encoder_unet, feature_shapes,
                                         skip_layers)

SMALL = (32, 32, 16, 16, 8)  # decoder filters of the fast models


@pytest.mark.parametrize("encoder", sorted(BACKBONES))
def test_each_skip_exists_and_has_its_stride_for_square_and_oblong_inputs(encoder):
    model = backbone(encoder, 1)
    names = skip_layers(model, encoder)
    assert all(name is None or model.get_layer(name) for name in names) and names[-1] is not None
    assert names[0] is not None or encoder.startswith("convnext")  # ConvNeXt's stem has stride 4
    for height, width in ((224, 224), (160, 192)):
        for stride, shape in zip(STRIDES, feature_shapes(model, names, height, width)):
            assert shape is None or shape[1:3] == (height // stride, width // stride), (encoder, stride, shape)


def test_the_resnet50_decoder_has_the_parameters_worked_out_by_hand():
    """Stages (in -> out channels, two 3x3 convs without bias, each with batch norm): 2048+1024 -> 256,
    256+512 -> 128, 128+256 -> 64, 64+64 -> 32, 32 -> 16; conv weights 9,010,944, batch norms 4 x 2 x 496
    (Keras counts the moving statistics), the 1x1 head 17."""
    model = build_encoder_unet((None, None, 1), 1, encoder="resnet50")
    assert model.count_params() - backbone("resnet50", 1).count_params() == 9_010_944 + 3_968 + 17
    assert model.get_layer("encoder").output[0].shape[-1] == 64 and model.output_shape == (None, None, None, 1)


def test_weights_from_a_file_are_loaded_bit_for_bit_and_rgb_ones_are_adapted(tmp_path):
    keras.utils.set_random_seed(1)
    gray, rgb = backbone("mobilenetv2", 1), backbone("mobilenetv2", 3)
    gray.save_weights(tmp_path / "gray.weights.h5")
    rgb.save_weights(tmp_path / "rgb.weights.h5")
    loaded = build_encoder_unet((64, 64, 1), 1, encoder="mobilenetv2", decoder_filters=SMALL,
                                encoder_weights=str(tmp_path / "gray.weights.h5")).get_layer("encoder")
    for ours, saved in zip(loaded.get_weights(), gray.get_weights()):
        np.testing.assert_array_equal(ours, saved)
    adapted = build_encoder_unet((64, 64, 4), 1, encoder="mobilenetv2", decoder_filters=SMALL,
                                 encoder_weights=str(tmp_path / "rgb.weights.h5")).get_layer("encoder").get_weights()
    first = rgb.get_weights()[0]
    np.testing.assert_allclose(adapted[0], first[:, :, [0, 1, 2, 0], :] * 0.75)  # cycled, scaled by 3/C
    for ours, saved in zip(adapted[1:], rgb.get_weights()[1:]):
        np.testing.assert_array_equal(ours, saved)


def test_adapting_a_first_kernel_sums_it_for_one_channel():
    kernel = np.arange(2 * 2 * 3 * 2, dtype=np.float32).reshape(2, 2, 3, 2)
    np.testing.assert_array_equal(adapt_weight(kernel, (2, 2, 1, 2)), kernel.sum(axis=2, keepdims=True))
    np.testing.assert_array_equal(adapt_weight(np.array([1.0, 2.0, 6.0]), (1,)), [3.0])


def test_it_saves_and_reloads_in_safe_mode_and_predicts_the_same(tmp_path):
    model = build_encoder_unet((None, None, 2), 3, encoder="mobilenetv2", decoder_filters=SMALL)
    image = np.random.default_rng(0).random((1, 64, 96, 2)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(image)), np.asarray(model(image)), atol=1e-5)
    assert again.output_shape[-1] == 3


@pytest.mark.parametrize("arguments, message", [
    (dict(encoder="resnet5"), r"^encoder must be a known backbone: did you mean resnet50, .*Received: encoder='resnet5'$"),
    (dict(input_shape=(100, 100, 1)), r"^input size 100 does not fit .*the nearest valid sizes are 96 or 128$"),
    (dict(decoder_filters=(8, 8)), r"^decoder_filters must be 5 channel counts >= 1"),
    (dict(encoder_weights="missing.weights.h5"), r"^encoder_weights=missing.weights.h5: no such \.weights\.h5 file"),
])
def test_bad_arguments_are_one_line(arguments, message):
    with pytest.raises(ConfigError, match=message):
        build_encoder_unet(**{"input_shape": (64, 64, 1), "encoder": "mobilenetv2", **arguments})


def test_the_weights_of_another_backbone_are_refused_naming_the_file(tmp_path):
    backbone("densenet121", 1).save_weights(tmp_path / "densenet.weights.h5")
    with pytest.raises(ConfigError, match=r"^encoder_weights=.*densenet.weights.h5: not the weights of a mobilenetv2 "
                                          r"backbone for 1 or 3 input channels"):
        build_encoder_unet((64, 64, 1), encoder="mobilenetv2", encoder_weights=str(tmp_path / "densenet.weights.h5"))


def test_imagenet_weights_take_keras_download_path_and_its_failure_is_one_line(monkeypatch):
    """The real keras.applications download (weights="imagenet"); where it cannot fetch (this machine
    has no internet), one line saying so and what to do."""
    from unetlab.errors import DataError

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -2] Name or service "
                        "not known")

    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", offline)
    with pytest.raises(DataError, match=r"^encoder_weights=imagenet: Keras could not fetch the mobilenetv2 weights "
                                        r"\(URL fetch failure .*\); on a machine without internet, save them"):
        build_encoder_unet((64, 64, 1), encoder="mobilenetv2", encoder_weights="imagenet")
