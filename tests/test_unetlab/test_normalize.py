"""Normalisation modes against NumPy, and the per-channel training statistics."""

import numpy as np
import pytest

from unetlab.data.decode import decode_image
from unetlab.data.normalize import check_normalize, dataset_statistics, normalize_image
from unetlab.data.pipeline import make_folder_dataset
from unetlab.errors import ConfigError
from unetlab_samples import save

pytest.importorskip("tifffile")

RNG = np.random.default_rng(0)


def two_images(tmp_path, channels=2):
    """Two 16-bit TIFFs of different size and brightness, and their [0, 1] values."""
    first = RNG.integers(0, 30000, (6, 5, channels)).astype(np.uint16)
    second = RNG.integers(20000, 65535, (4, 7, channels)).astype(np.uint16)
    pairs = []
    for name, image in (("a", first), ("b", second)):
        pairs.append((save(tmp_path / "images" / f"{name}.tif", image),
                      save(tmp_path / "masks" / f"{name}.png", np.zeros(image.shape[:2], np.uint8))))
    return pairs, [first / np.float64(65535), second / np.float64(65535)]


def test_every_normalize_mode_matches_numpy(tmp_path):
    pairs, scaled = two_images(tmp_path)
    expected = {
        "scale": scaled,
        "minmax": [(x - x.min()) / (x.max() - x.min()) for x in scaled],
        "zscore": [(x - x.mean()) / x.std() for x in scaled],
        "dataset": [(x - [0.2, 0.3]) / np.array([0.5, 0.25]) for x in scaled],
    }
    for mode, wanted in expected.items():
        images = [np.asarray(normalize_image(decode_image(image, 2), mode, mean=[0.2, 0.3], std=[0.5, 0.25]))
                  for image, _ in pairs]
        for image, reference in zip(images, wanted):
            np.testing.assert_allclose(image, reference, atol=2e-5, err_msg=mode)


def test_dataset_statistics_are_per_channel_over_all_training_pixels(tmp_path):
    pairs, scaled = two_images(tmp_path)
    pixels = np.concatenate([x.reshape(-1, 2) for x in scaled])
    mean, std = dataset_statistics(pairs, channels=2)
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-5)
    from_dataset = dataset_statistics(make_folder_dataset(pairs, image_size=None, channels=2, num_classes=1))
    np.testing.assert_allclose(from_dataset, (mean, std), rtol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    (dict(normalize="unit"), r"^normalize must be one of scale, minmax, zscore, dataset\. Received: normalize='unit'$"),
    (dict(normalize="dataset"), r"^mean and std are the training statistics .*Received: mean=None, std=None$"),
    (dict(normalize="dataset", mean=[0.1, 0.2], std=[1.0]), r"^mean must be a number or 1 finite number"),
    (dict(normalize="dataset", mean=0.5, std=0.0), r"^std must be > 0\. Received: std=0\.0$"),
])
def test_bad_normalisation_settings_name_the_argument(arguments, message):
    with pytest.raises(ConfigError, match=message):
        check_normalize(channels=1, **arguments)
    if arguments["normalize"] != "dataset" or "mean" not in arguments:
        with pytest.raises(ConfigError, match=message):
            normalize_image(np.zeros((2, 2, 1), np.float32), **arguments)


def test_check_normalize_repeats_one_number_per_channel():
    assert check_normalize("dataset", 3, mean=0.5, std=[0.1, 0.2, 0.3]) == ([0.5] * 3, [0.1, 0.2, 0.3])
    assert check_normalize("zscore", 3, mean=0.5, std=0.1) == (None, None)
