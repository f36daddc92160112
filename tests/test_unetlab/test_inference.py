import keras
import numpy as np
import pytest

from unetlab.errors import ConfigError, DataError
from unetlab.geometry import unet_output_size
from unetlab.inference import gaussian_weights, predict_ensemble, predict_image, predict_tiled, predict_whole
from unetlab.models import build_unet
from unetlab.preprocessing import Preprocessing

# Tile borders (and the single seam of non-overlapping tiles) of a 512-pixel side with tile 256,
# overlap 0.5: windows start at 0, 128, 256. Index i of np.diff is the step from pixel i to i + 1.
BORDER_STEPS = [127, 255, 383]


@pytest.fixture(scope="module")
def same_model():
    keras.utils.set_random_seed(0)
    return build_unet((None, None, 1), 1, depth=3, filters=4)


@pytest.fixture(scope="module")
def valid_model():
    keras.utils.set_random_seed(0)
    return build_unet((92, 92, 1), 2, depth=2, filters=4, padding="valid")


def smooth_image(height, width):
    y, x = np.mgrid[0:height, 0:width] / 512.0
    return (np.sin(2 * np.pi * (1.3 * x + 0.4 * y)) + np.cos(2 * np.pi * (0.7 * y - 0.9 * x)))[..., None].astype(
        np.float32)


def border_gradient_ratio(probability):
    """Mean |step| between neighbouring pixels across tile borders / mean |step| everywhere (rows and columns)."""
    columns, rows = np.abs(np.diff(probability, axis=1)), np.abs(np.diff(probability, axis=0))
    at_borders = np.concatenate([columns[:, BORDER_STEPS].ravel(), rows[BORDER_STEPS, :].ravel()])
    return at_borders.mean() / np.concatenate([columns.ravel(), rows.ravel()]).mean()


def test_tiled_prediction_matches_whole_image_prediction(same_model):
    image = np.random.default_rng(0).normal(size=(512, 512, 1)).astype(np.float32)
    whole = predict_whole(same_model, image, multiple=8)
    tiled = predict_tiled(same_model, image, tile_size=256, overlap=0.5)
    difference = np.abs(tiled - whole)
    # Measured with this random-init model (seeds 0-2): mean 3.5e-5..7.7e-5, max 7.7e-4..1.9e-3
    # (without overlap: mean ~0.01, max ~0.5). Bounds set a few times above the measurement.
    assert tiled.shape == whole.shape == (512, 512, 1)
    assert tiled.dtype == np.float32
    assert difference.mean() < 2e-4
    assert difference.max() < 5e-3


def test_blended_tiles_leave_no_seams_where_non_overlapping_tiles_do(same_model):
    image = smooth_image(512, 512)
    blended = predict_tiled(same_model, image, tile_size=256, overlap=0.5)[..., 0]
    abutting = predict_tiled(same_model, image, tile_size=256, overlap=0.0)[..., 0]
    # Measured: 0.45 blended (0.45 for the whole-image prediction too), 4.6 for abutting tiles and
    # 5.6 for overlapping tiles averaged with uniform instead of Gaussian weights.
    assert border_gradient_ratio(blended) < 1.0
    assert border_gradient_ratio(abutting) > 2.0


@pytest.mark.parametrize("height, width", [(301, 517), (40, 1000), (50, 70), (1, 5)])
def test_any_image_size_comes_back_with_its_size_and_probabilities(same_model, height, width):
    image = np.random.default_rng(1).normal(size=(height, width, 1)).astype(np.float32)
    probability = predict_tiled(same_model, image, tile_size=256, overlap=0.25, batch_size=3)
    assert probability.shape == (height, width, 1)
    assert probability.dtype == np.float32
    assert np.isfinite(probability).all()
    assert probability.min() >= 0.0 and probability.max() <= 1.0


def test_flips_tta_of_a_mirror_symmetric_image_is_mirror_symmetric():
    keras.utils.set_random_seed(1)
    model = build_unet((None, None, 1), 1, depth=2, filters=4)
    half = np.random.default_rng(2).normal(size=(96, 96, 1)).astype(np.float32)
    image = half + half[:, ::-1]  # symmetric under horizontal flip, nothing else
    plain = predict_tiled(model, image, tile_size=64, overlap=0.5)
    flips = predict_tiled(model, image, tile_size=64, overlap=0.5, tta="flips")
    assert np.abs(plain - plain[:, ::-1]).max() > 1e-3  # the model alone is not symmetric
    np.testing.assert_allclose(flips, flips[:, ::-1], atol=1e-5)


def test_d4_tta_of_a_d4_symmetric_image_is_d4_symmetric():
    keras.utils.set_random_seed(1)
    model = build_unet((None, None, 1), 1, depth=2, filters=4)
    base = np.random.default_rng(3).normal(size=(96, 96, 1)).astype(np.float32)
    image = sum(np.rot90(view, k) for view in (base, base[:, ::-1]) for k in range(4))
    d4 = predict_tiled(model, image, tile_size=64, overlap=0.5, tta="d4")
    for view in (np.rot90(d4), np.rot90(d4, 2), d4[:, ::-1], d4[::-1], d4.transpose(1, 0, 2)):
        np.testing.assert_allclose(view, d4, atol=1e-5)


@pytest.mark.parametrize("tta", ["flips", "d4"])
def test_tta_undoes_each_transform_for_an_equivariant_model(tta):
    # A 3x3 convolution with a D4-symmetric kernel commutes with flips and rotations, so averaging
    # inverse(model(transform(x))) must give model(x) back; a wrong inverse would not.
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs))
    a, b, c = 0.3, -0.7, 1.1
    model.layers[-1].set_weights([np.array([[a, b, a], [b, c, b], [a, b, a]], np.float32)[..., None, None],
                                  np.array([0.1], np.float32)])
    image = np.random.default_rng(4).normal(size=(80, 120, 1)).astype(np.float32)
    plain = predict_tiled(model, image, tile_size=32, overlap=0.5)
    augmented = predict_tiled(model, image, tile_size=32, overlap=0.5, tta=tta)
    np.testing.assert_allclose(augmented, plain, atol=1e-6)


def test_valid_padding_model_predicts_the_full_image(valid_model):
    assert unet_output_size(92, 2, "valid") == 52  # 20 pixels of mirrored context on each side
    image = np.random.default_rng(5).normal(size=(130, 75, 1)).astype(np.float32)
    probability = predict_tiled(valid_model, image, tile_size=92, overlap=0.5, tta="flips")
    assert probability.shape == (130, 75, 2)
    np.testing.assert_allclose(probability.sum(axis=-1), 1.0, atol=1e-5)


def test_valid_padding_tiles_get_mirrored_context_and_abut_in_output_units(valid_model):
    image = np.random.default_rng(6).normal(size=(52, 104, 1)).astype(np.float32)
    padded = np.pad(image, ((20, 20), (20, 20), (0, 0)), mode="reflect")
    tiles = np.stack([padded[:, 0:92], padded[:, 52:144]])
    left, right = valid_model.predict_on_batch(tiles)
    tiled = predict_tiled(valid_model, image, tile_size=92, overlap=0.0)
    np.testing.assert_allclose(tiled, np.concatenate([left, right], axis=1), atol=1e-6)


def test_gaussian_weights_peak_in_the_centre_and_stay_positive():
    weights = gaussian_weights(64)
    assert weights.shape == (64, 64) and weights.dtype == np.float32
    assert weights.max() == pytest.approx(1.0, abs=1e-3) and weights.min() > 0
    assert weights[31, 31] > weights[31, 8] > weights[0, 0]
    np.testing.assert_array_equal(weights, weights[::-1, ::-1])
    np.testing.assert_array_equal(weights, weights.T)


@pytest.mark.parametrize("arguments, message", [
    ({"tile_size": 0}, r"^tile_size must be a positive integer\. Received: tile_size=0$"),
    ({"tile_size": 64.0}, r"^tile_size must be a positive integer\. Received: tile_size=64\.0$"),
    ({"overlap": 1.0}, r"^overlap must be in \[0, 1\)\. Received: overlap=1\.0$"),
    ({"overlap": -0.1}, r"^overlap must be in \[0, 1\)\. Received: overlap=-0\.1$"),
    ({"batch_size": 0}, r"^batch_size must be a positive integer\. Received: batch_size=0$"),
    ({"tta": "rot90"}, r"^tta must be one of none, flips, d4\. Received: tta='rot90'$"),
    ({"tile_size": 60}, r"^tile_size=60 does not fit the model .*Received: tile_size=60$"),
])
def test_bad_tiling_arguments_name_the_argument(same_model, arguments, message):
    image = np.zeros((64, 64, 1), np.float32)
    with pytest.raises(ConfigError, match=message):
        predict_tiled(same_model, image, **{"tile_size": 64, **arguments})


def test_tile_size_must_match_a_fixed_input_size(valid_model):
    with pytest.raises(ConfigError, match=r"^tile_size=64 does not match .* 92x92; use tile_size=92"):
        predict_tiled(valid_model, np.zeros((64, 64, 1), np.float32), tile_size=64)


def test_image_with_wrong_channel_count_is_a_data_error(same_model):
    with pytest.raises(DataError, match=r"^image has 3 channels but the model expects 1$"):
        predict_tiled(same_model, np.zeros((64, 64, 3), np.float32), tile_size=64)
    with pytest.raises(DataError, match=r"image must have shape \(height, width, channels\)"):
        predict_tiled(same_model, np.zeros((64, 64), np.float32), tile_size=64)
    with pytest.raises(DataError, match=r"^image has 3 channels but the model expects 1$"):
        predict_whole(same_model, np.zeros((64, 64, 3), np.float32), multiple=8)


def test_predict_whole_crops_back_sizes_that_are_not_multiples(same_model):
    image = np.random.default_rng(7).normal(size=(37, 50, 1)).astype(np.float32)
    assert predict_whole(same_model, image, multiple=8).shape == (37, 50, 1)
    with pytest.raises(ConfigError, match=r"^multiple must be an integer >= 1 .*Received: multiple=0$"):
        predict_whole(same_model, image, multiple=0)


def _tiny_member(num_classes, seed, **preprocessing):
    keras.utils.set_random_seed(seed)
    model = build_unet((None, None, 1), num_classes, depth=1, filters=2)
    return model, Preprocessing(channels=1, num_classes=num_classes, **preprocessing)


def test_ensemble_is_the_mean_of_its_members_each_with_its_own_preprocessing():
    first = _tiny_member(2, 0, tile_size=16)
    second = _tiny_member(2, 1, normalize="dataset", mean=[0.4], std=[0.2], tile_size=32)
    image = np.random.default_rng(8).integers(0, 256, size=(45, 37), dtype=np.uint8)
    settings = {"overlap": 0.25, "tta": "flips"}
    singles = [predict_image(model, image, preprocessing, **settings) for model, preprocessing in (first, second)]
    assert not np.allclose(*singles, atol=1e-3)  # two different models
    np.testing.assert_allclose(predict_ensemble([first, second], image, **settings), np.mean(singles, axis=0),
                               atol=1e-6)
    np.testing.assert_array_equal(predict_ensemble([first], image, **settings), singles[0])


def test_ensemble_needs_members_that_agree_on_num_classes():
    image = np.zeros((32, 32), np.uint8)
    with pytest.raises(ConfigError, match=r"^members must hold at least one .*Received: members=\[\]$"):
        predict_ensemble([], image)
    with pytest.raises(ConfigError, match=r"^ensemble members must agree on num_classes: member 0 has "
                                          r"num_classes=1, member 1 has num_classes=3$"):
        predict_ensemble([_tiny_member(1, 0), _tiny_member(3, 1)], image, tile_size=32)
