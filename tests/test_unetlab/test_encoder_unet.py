"""unetlab.models.encoder_unet: every backbone's skips at strides 2-32, the decoder's parameters worked out
by hand, weights loaded bit for bit from a file (and adapted from RGB) and paying off in training, and
one-line refusals."""

import keras
import numpy as np
import pytest

from unetlab.data.synthetic import VAL_OFFSET, make_synthetic_dataset
from unetlab.errors import ConfigError
from unetlab.losses import build_loss
from unetlab.metrics import build_metrics
from unetlab.models.encoder_unet import (BACKBONES, STRIDES, adapt_weight, backbone, build_encoder_unet, feature_shapes,
                                         skip_layers)

SMALL = (32, 32, 16, 16, 8)  # decoder filters of the fast models


@pytest.mark.parametrize("encoder", sorted(BACKBONES))
def test_each_skip_exists_and_has_its_stride_for_square_and_oblong_inputs(encoder):
    model = backbone(encoder, 1)
    names = skip_layers(model, encoder)
    assert all(name is None or model.get_layer(name) for name in names)
    assert [name is None for name in names] == [encoder.startswith("convnext"), *[False] * 4]  # ConvNeXt: stem stride 4
    for height, width in ((224, 224), (160, 192)):
        for stride, shape in zip(STRIDES, feature_shapes(model, names, height, width)):
            assert shape is None or shape[1:3] == (height // stride, width // stride), (encoder, stride, shape)


def test_after_names_the_layer_that_keras_numbers_by_a_global_counter():
    """MobileNetV3's stem and last activations are `activation`, `activation_17`, ... by how many were built
    before: "after:conv_bn" finds the one that follows the named batch norm in every build."""
    first, second = (skip_layers(backbone("mobilenetv3small", 1), "mobilenetv3small") for _ in range(2))
    assert first[1:4] == second[1:4] == ["expanded_conv_project_bn", "expanded_conv_2_add", "expanded_conv_7_add"]
    assert first[0] != second[0] and first[4] != second[4]
    assert all(name.startswith("activation") for name in (*first[::4], *second[::4]))


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


@pytest.mark.parametrize("encoder", ["mobilenetv2", "mobilenetv3small"])  # v3: keras.ops nodes (hard sigmoid)
def test_it_saves_and_reloads_in_safe_mode_and_predicts_the_same(tmp_path, encoder):
    model = build_encoder_unet((None, None, 2), 3, encoder=encoder, decoder_filters=SMALL)
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
    backbone("mobilenetv3small", 1).save_weights(tmp_path / "v3.weights.h5")  # the smallest other backbone
    with pytest.raises(ConfigError, match=r"^encoder_weights=.*v3.weights.h5: not the weights of a mobilenetv2 "
                                          r"backbone for 1 or 3 input channels"):
        build_encoder_unet((64, 64, 1), encoder="mobilenetv2", encoder_weights=str(tmp_path / "v3.weights.h5"))


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


def synthetic_arrays(count: int, first_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` images (64x64, one channel) and masks of the embedded synthetic data (`data=synthetic`), noisier
    than its default (0.5, not 0.15), so that telling a shape from the background takes context, not one pixel."""
    pairs = make_synthetic_dataset(count, image_size=64, noise=0.5, first_index=first_index).as_numpy_iterator()
    images, masks = zip(*pairs)
    return np.stack(images), np.stack(masks)


def settle_batch_norms(model: keras.Model, images: np.ndarray) -> None:
    """Set every batch norm's moving statistics to those of `images`, as a long training leaves them: after a
    few steps they are still near their initial values (momentum 0.99 in the decoder, 0.999 in Keras'
    MobileNetV2), and validation would not see the network that was trained."""
    norms = [layer for layer in (*model.layers, *model.get_layer("encoder").layers)
             if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.momentum = 0.0
    model(images, training=True)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def trained_encoder_unet(seed: int, encoder_weights: str, images, masks, *, epochs: int, batch_size: int):
    """A mobilenetv2 U-Net with `encoder_weights`, trained with the project's loss and metrics (seeded)."""
    keras.utils.set_random_seed(seed)
    model = build_encoder_unet((64, 64, 1), 1, encoder="mobilenetv2", decoder_filters=SMALL,
                               encoder_weights=encoder_weights)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=build_loss("bce_dice"), metrics=build_metrics(1),
                  run_eagerly=True)  # a few steps: tracing the graph would take longer than they do
    model.fit(images, masks, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    settle_batch_norms(model, images)
    return model


@pytest.mark.slow
def test_encoder_weights_from_a_file_reach_a_higher_validation_dice_than_random_ones(tmp_path):
    """Encoder weights pay off end to end. ImageNet's cannot be fetched here, so a U-Net first trained on the
    synthetic data (48 images, 12 steps) gives them: its backbone saved as a .weights.h5 file
    (`backbone(...).save_weights`) and loaded by encoder_weights=PATH into a fresh network, which after 3
    steps on 8 of those images beats the same network (same seed, same steps) from random weights on 32
    held-out images. Validation Dice, pretrained against random, with seed s for the two networks and 100 + s
    for the source: 0.373 against 0.318 (s = 0), 0.670 against 0.566 (1), 0.540 against 0.424 (2, kept)."""
    seed = 2
    images, masks = synthetic_arrays(48)
    source = trained_encoder_unet(100 + seed, "none", images, masks, epochs=4, batch_size=16)
    path = tmp_path / "mobilenetv2.weights.h5"
    encoder = backbone("mobilenetv2", 1)
    encoder.set_weights(source.get_layer("encoder").get_weights())
    encoder.save_weights(path)
    validation = synthetic_arrays(32, first_index=VAL_OFFSET)
    dice = {name: trained_encoder_unet(seed, weights, images[:8], masks[:8], epochs=3, batch_size=8)
            .evaluate(*validation, batch_size=32, verbose=0, return_dict=True)["dice"]
            for name, weights in (("pretrained", str(path)), ("random", "none"))}
    assert dice["pretrained"] > dice["random"] + 0.05, dice
