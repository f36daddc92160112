"""Losses against NumPy references on random masks, with and without ignored pixels."""

import keras
import numpy as np
import pytest

from unetlab.errors import ConfigError
from unetlab.losses import LOSSES, build_loss
from unetlab_samples import IGNORE, one_hot, random_case, with_ignored

EPS = 1e-7


def np_crossentropy(truth, probabilities):
    p = np.clip(probabilities, EPS, 1 - EPS)
    t = one_hot(truth, p.shape[-1])
    if p.shape[-1] == 1:
        return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    return -(t * np.log(p)).sum(-1).mean()


def np_tversky(truth, probabilities, alpha, beta, smooth):
    t = one_hot(truth, probabilities.shape[-1])
    p = probabilities
    tp = (t * p).sum(axis=(1, 2))
    fp = ((1 - t) * p).sum(axis=(1, 2))
    fn = (t * (1 - p)).sum(axis=(1, 2))
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def np_focal(truth, probabilities, gamma, alpha):
    p = np.clip(probabilities, EPS, 1 - EPS)
    t = one_hot(truth, p.shape[-1])
    if p.shape[-1] == 1:
        p_true = t * p + (1 - t) * (1 - p)
        weight = t * alpha + (1 - t) * (1 - alpha)
        return (-weight * (1 - p_true) ** gamma * np.log(p_true)).mean()
    return (-(t * (1 - p) ** gamma * np.log(p)).sum(-1)).mean()


def np_loss(name, truth, probabilities):
    dice = 1 - np_tversky(truth, probabilities, 0.5, 0.5, 1.0).mean(-1)
    return {
        "bce": lambda: np_crossentropy(truth, probabilities),
        "ce": lambda: np_crossentropy(truth, probabilities),
        "dice": lambda: dice.mean(),
        "bce_dice": lambda: np_crossentropy(truth, probabilities) + dice.mean(),
        "ce_dice": lambda: np_crossentropy(truth, probabilities) + dice.mean(),
        "focal": lambda: np_focal(truth, probabilities, 2.0, 0.25),
        "tversky": lambda: (1 - np_tversky(truth, probabilities, 0.3, 0.7, 1.0).mean(-1)).mean(),
    }[name.removeprefix("weighted_")]()  # without weight maps a weighted loss is the plain one


SIGMOID_ONLY = {"bce", "bce_dice", "weighted_bce", "weighted_bce_dice"}
SOFTMAX_ONLY = {"ce", "ce_dice", "weighted_ce", "weighted_ce_dice"}
CASES = [(name, k) for name in sorted(LOSSES) for k in (1, 3)
         if not (name in SIGMOID_ONLY and k > 1) and not (name in SOFTMAX_ONLY and k == 1)]


@pytest.mark.parametrize("name, num_classes", CASES)
def test_loss_matches_numpy_reference(name, num_classes):
    truth, probabilities = random_case(num_classes)
    value = float(build_loss(name)(truth, probabilities))
    assert value == pytest.approx(np_loss(name, truth, probabilities), rel=1e-4)


def test_perfect_prediction_has_zero_region_loss():
    truth, _ = random_case(3)
    perfect = one_hot(truth, 3)
    assert float(build_loss("dice")(truth, perfect)) == pytest.approx(0.0, abs=1e-6)
    assert float(build_loss("tversky")(truth, perfect)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_survives_serialization(name):
    loss = build_loss(name, **({"smooth": 2.0} if "dice" in name else {}))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()


# --- ignore_index --------------------------------------------------------------------------------

def np_pixel_loss(pixel, valid):
    """Per-image mean of `pixel` (batch, H, W) over the scored pixels, then the batch mean."""
    valid = valid[..., 0]
    per_image = (pixel * valid).sum((1, 2)) / np.maximum(valid.sum((1, 2)), 1)
    return per_image.mean()


def np_loss_ignoring(name, truth, probabilities, valid):
    truth = np.where(valid, truth, 0)
    p = np.clip(probabilities, EPS, 1 - EPS)
    t = one_hot(truth, p.shape[-1])
    if p.shape[-1] == 1:
        crossentropy = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(-1)
        p_true = t * p + (1 - t) * (1 - p)
        focal = (-(t * 0.25 + (1 - t) * 0.75) * (1 - p_true) ** 2 * np.log(p_true)).sum(-1)
    else:
        crossentropy = -(t * np.log(p)).sum(-1)
        focal = -(t * (1 - p) ** 2 * np.log(p)).sum(-1)

    def tversky(alpha, beta):
        w, q = valid.astype(np.float32), probabilities
        tp = (t * q * w).sum((1, 2))
        fp = ((1 - t) * q * w).sum((1, 2))
        fn = (t * (1 - q) * w).sum((1, 2))
        return ((tp + 1) / (tp + alpha * fp + beta * fn + 1)).mean(-1)

    ce, dice = np_pixel_loss(crossentropy, valid), (1 - tversky(0.5, 0.5)).mean()
    return {"bce": ce, "ce": ce, "dice": dice, "bce_dice": ce + dice, "ce_dice": ce + dice,
            "focal": np_pixel_loss(focal, valid),
            "tversky": (1 - tversky(0.3, 0.7)).mean()}[name.removeprefix("weighted_")]


@pytest.mark.parametrize("name, num_classes", CASES)
def test_loss_with_ignore_index_matches_numpy_reference_and_ignores_those_pixels(name, num_classes):
    clean, probabilities = random_case(num_classes)
    truth, valid = with_ignored(clean)
    loss = build_loss(name, ignore_index=IGNORE)
    value = float(loss(truth, probabilities))
    assert value == pytest.approx(np_loss_ignoring(name, clean, probabilities, valid), rel=1e-4)
    other = np.where(valid, probabilities, probabilities[::-1, ::-1])  # change the prediction where ignored
    assert float(loss(truth, other)) == pytest.approx(value, rel=1e-5)
    assert loss.get_config()["ignore_index"] == IGNORE
    assert build_loss(name).get_config()["ignore_index"] is None


@pytest.mark.parametrize("name, num_classes", [("weighted_bce", 1), ("weighted_ce", 3), ("weighted_bce_dice", 1),
                                               ("weighted_ce_dice", 3)])
def test_weighted_losses_multiply_each_pixels_crossentropy_by_its_weight(name, num_classes):
    """Keras passes the weight maps as sample weights (batch, H, W): weighted cross-entropy, unweighted Dice."""
    clean, probabilities = random_case(num_classes)
    truth, valid = with_ignored(clean)
    weights = np.random.default_rng(4).uniform(0, 12, clean.shape[:3]).astype(np.float32)
    p = np.clip(probabilities, EPS, 1 - EPS)
    t = one_hot(np.where(valid, clean, 0), p.shape[-1])
    pixel = (-(t * np.log(p) + (1 - t) * np.log(1 - p)) if num_classes == 1 else -t * np.log(p)).sum(-1)
    expected = np_pixel_loss(pixel * weights, valid)
    if name.endswith("dice"):
        expected += np_loss_ignoring("dice", clean, probabilities, valid)
    loss = build_loss(name, ignore_index=IGNORE)
    assert float(loss(truth, probabilities, weights)) == pytest.approx(expected, rel=1e-4)
    assert float(loss(truth, probabilities, np.ones_like(weights))) == pytest.approx(
        float(loss(truth, probabilities)), rel=1e-5)


def test_binary_loss_never_treats_ignore_index_as_foreground():
    truth = np.array([[0, 1, IGNORE, IGNORE]], np.float32).reshape(1, 2, 2, 1)
    perfect = np.array([[0, 1, 0, 0]], np.float32).reshape(1, 2, 2, 1)
    for name in ("bce", "dice", "bce_dice", "tversky"):
        assert float(build_loss(name, ignore_index=IGNORE)(truth, perfect)) == pytest.approx(0.0, abs=1e-5)


def test_unknown_loss_and_fractional_ignore_index_name_the_argument():
    with pytest.raises(ConfigError, match=r"^name must be one of bce, ce, dice, .*Received: name='iou'$"):
        build_loss("iou")
    with pytest.raises(ConfigError, match=r"^ignore_index must be an integer or None\. Received: ignore_index=2\.5$"):
        build_loss("dice", ignore_index=2.5)
    assert build_loss("dice", ignore_index=255.0).get_config()["ignore_index"] == 255


@pytest.mark.parametrize("name, num_classes", CASES)
def test_a_loss_of_volumes_is_that_of_images_holding_the_same_voxels(name, num_classes):
    """Every loss is per image over its pixels, so a (2, 4, 8, 8, C) batch of volumes scores as the (2, 32, 8, C)
    batch of images holding the same voxels: per image, with ignored voxels and (weighted losses) voxel weights."""
    clean, probabilities = random_case(num_classes, batch=2, size=16)
    truth, _ = with_ignored(clean)
    weights = np.random.default_rng(5).uniform(0, 12, clean.shape[:3]).astype(np.float32)
    as_volumes = lambda x: x.reshape(2, 4, 8, 8, *x.shape[3:])  # noqa: E731
    as_images = lambda x: x.reshape(2, 32, 8, *x.shape[3:])  # noqa: E731
    per_image = build_loss(name, ignore_index=IGNORE, reduction="none")
    cases = [(clean, probabilities), (truth, probabilities)]
    if name.startswith("weighted_"):  # weight maps as sample weights, one per voxel
        cases.append((truth, probabilities, weights))
    for arguments in cases:
        volume = per_image(*map(as_volumes, arguments))
        assert volume.shape == (2,)
        np.testing.assert_allclose(volume, per_image(*map(as_images, arguments)), rtol=1e-5)


def test_spatial_axes_are_those_between_the_batch_and_the_channels():
    from unetlab.losses import spatial_axes

    assert spatial_axes(np.zeros((2, 8, 8, 3))) == (1, 2) and spatial_axes(np.zeros((2, 4, 8, 8, 3))) == (1, 2, 3)
    assert spatial_axes(np.zeros((2, 4, 8, 8)), channels=False) == (1, 2, 3)
