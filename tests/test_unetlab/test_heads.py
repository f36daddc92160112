"""Deep supervision: auxiliary heads, their weighted losses against downsampled labels, metrics of the
full-resolution head only, and an inference model without the auxiliary heads."""

import keras
import numpy as np
import pytest

from unetlab.errors import ConfigError
from unetlab.losses import build_loss
from unetlab.metrics import build_metrics
from unetlab.models import (DeepSupervision, build_encoder_unet, build_unet, build_unet_plus_plus, describe,
                            inference_model)
from unetlab.models.heads import downsampled, supervision_weights


def pairs(count=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((count, size, size, 1), np.float32)
    return images, (images > 0.6).astype("float32")


def test_weights_halve_per_level_and_sum_to_one():
    assert supervision_weights(1) == [1.0]
    np.testing.assert_allclose(supervision_weights(3), [4 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(sum(supervision_weights(5)), 1.0)


def test_labels_are_sampled_every_stride_pixels():
    labels = np.arange(2 * 8 * 8 * 2, dtype="float32").reshape(2, 8, 8, 2)  # a class channel and a weight channel
    sampled = keras.ops.convert_to_numpy(downsampled(labels, np.zeros((2, 2, 2, 1), "float32")))
    np.testing.assert_array_equal(sampled, labels[:, ::4, ::4, :])


@pytest.mark.parametrize("labels_shape, prediction_shape, steps", [
    ((2, 8, 8, 1), (2, 4, 8, 1), (2, 1)),  # an anisotropic 2D stage (strides [2, 1])
    ((2, 4, 8, 8, 2), (2, 4, 4, 4, 1), (1, 2, 2)),  # 3D, nnU-Net's [1, 2, 2]
    ((1, 8, 16, 16, 1), (1, 2, 8, 4, 1), (4, 2, 4)),
])
def test_labels_are_sampled_every_stride_pixels_along_each_axis(labels_shape, prediction_shape, steps):
    labels = np.arange(np.prod(labels_shape), dtype="float32").reshape(labels_shape)
    sampled = keras.ops.convert_to_numpy(downsampled(labels, np.zeros(prediction_shape, "float32")))
    np.testing.assert_array_equal(sampled, labels[(slice(None), *(slice(None, None, s) for s in steps))])
    assert sampled.shape[:-1] == prediction_shape[:-1]


def test_a_3d_unet_supervises_its_decoder_levels_with_1x1x1_heads():
    model = build_unet((16, 16, 16, 1), 2, depth=3, filters=2, deep_supervision=True)
    assert [tuple(o.shape)[1:] for o in model.outputs] == [(16, 16, 16, 2), (8, 8, 8, 2)]
    assert model.get_layer("head_aux1").__class__.__name__ == "Conv3D"
    assert model.get_layer("head").kernel_size == (1, 1, 1)
    assert model.count_params() == inference_model(model).count_params() + 4 * 2 + 2  # head_aux1 on 4 channels


def test_a_head_on_every_decoder_level_but_the_lowest_and_an_inference_model_without_them():
    model = build_unet((32, 32, 1), 1, depth=4, filters=2, deep_supervision=True)
    assert isinstance(model, DeepSupervision)
    assert [tuple(output.shape) for output in model.outputs] == [(None, 32, 32, 1), (None, 16, 16, 1), (None, 8, 8, 1)]
    assert [layer.name for layer in model.layers if layer.name.startswith("head")] == ["head", "head_aux1", "head_aux2"]
    network = inference_model(model)
    assert len(network.outputs) == 1 and network.get_layer("head") is model.get_layer("head")
    assert inference_model(model) is network and len(model.weights) == len(network.weights) + 4  # built once, untracked
    plain = build_unet((32, 32, 1), 1, depth=4, filters=2)
    assert network.count_params() == plain.count_params()
    assert model.count_params() == plain.count_params() + (4 + 1) + (8 + 1)  # 1x1 heads on levels 1 and 2 (4, 8 channels)
    assert "deep supervision: 2 auxiliary heads (+14 params, dropped at inference)" in describe(model, 4, 2)


@pytest.mark.parametrize("depth", [1, 2])
def test_too_shallow_a_decoder_for_an_auxiliary_head_gives_the_plain_network(depth):
    model = build_unet((16, 16, 1), 1, depth=depth, filters=2, deep_supervision=True)
    assert not isinstance(model, DeepSupervision) and len(model.outputs) == 1


def test_the_loss_is_the_weighted_sum_of_each_heads_loss_against_its_labels_and_metrics_are_the_heads():
    images, labels = pairs()
    model = build_unet((32, 32, 1), 1, depth=3, filters=4, deep_supervision=True)
    loss = build_loss("bce_dice")
    model.compile(optimizer="adam", loss=loss, metrics=build_metrics(1))
    results = model.evaluate(images, labels, batch_size=8, verbose=0, return_dict=True)
    outputs = model.predict(images, verbose=0)
    by_hand = 2 / 3 * float(loss(labels, outputs[0])) + 1 / 3 * float(loss(labels[:, ::2, ::2], outputs[1]))
    np.testing.assert_allclose(results["loss"], by_hand, rtol=1e-5)
    plain = build_unet((32, 32, 1), 1, depth=3, filters=4)
    plain.compile(optimizer="adam", loss=loss, metrics=build_metrics(1))
    plain.set_weights(inference_model(model).get_weights())
    expected = plain.evaluate(images, labels, batch_size=8, verbose=0, return_dict=True)
    assert results.keys() == expected.keys()  # dice, iou, ...: no per-output prefixes
    for name in expected.keys() - {"loss"}:
        np.testing.assert_allclose(results[name], expected[name], rtol=1e-5)


def test_training_fits_every_head_and_the_inference_model_predicts_the_first():
    images, labels = pairs(seed=1)
    model = build_unet((32, 32, 1), 1, depth=3, filters=4, deep_supervision=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=build_loss("dice"), metrics=build_metrics(1))
    before = [w.copy() for w in model.get_layer("head_aux1").get_weights()]
    history = model.fit(images, labels, epochs=3, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert not np.allclose(before[0], model.get_layer("head_aux1").get_weights()[0])
    np.testing.assert_allclose(inference_model(model).predict(images, verbose=0), model.predict(images, verbose=0)[0],
                               atol=1e-6)


def test_unet_plus_plus_and_the_encoder_unet_supervise_their_decoder_stages():
    nested = build_unet_plus_plus((32, 32, 1), 1, depth=3, filters=2, deep_supervision=True)
    assert [tuple(o.shape)[1] for o in nested.outputs] == [32, 16]
    assert nested.get_layer("head_aux1").input.shape[-1] == 4  # on X(1, 2), level 1's last node
    encoder = build_encoder_unet((64, 64, 3), 2, encoder="mobilenetv2", decoder_filters=(8, 8, 8, 8, 8),
                                 deep_supervision=True)
    assert [tuple(o.shape)[1:] for o in encoder.outputs] == [(64, 64, 2), (32, 32, 2), (16, 16, 2), (8, 8, 2)]


def test_deep_supervision_with_valid_padding_is_refused():
    with pytest.raises(ConfigError, match="deep_supervision needs padding='same'.*Received: padding='valid'"):
        build_unet((572, 572, 1), 2, padding="valid", deep_supervision=True)
    with pytest.raises(ConfigError, match="deep_supervision must be true or false"):
        build_unet((32, 32, 1), deep_supervision="yes")
