"""Folder pairs as a tf.data dataset (settings checked up front), and the batched training pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from unetlab.data import make_synthetic_splits
from unetlab.data.pipeline import UnevenBatches, make_batches, make_folder_dataset
from unetlab.errors import ConfigError
from unetlab_samples import save


def load(pairs, **params):
    """Every (image, mask) of make_folder_dataset at full resolution, as NumPy arrays."""
    params = {"image_size": None, "channels": 1, "num_classes": 1, **params}
    return [(image.numpy(), mask.numpy()) for image, mask in make_folder_dataset(pairs, **params)]


def empty_mask(tmp_path, shape=(12, 10)):
    return save(tmp_path / "masks" / "m.png", np.zeros(shape, np.uint8))


def test_folder_dataset_resizes_images_bilinearly_and_masks_to_the_nearest_class(tmp_path):
    mask = np.zeros((12, 10), np.uint8)
    mask[:, 5:] = 2
    pairs = [(save(tmp_path / "images" / "a.png", np.full((12, 10), 255, np.uint8)), save(tmp_path / "m.png", mask))]
    [(image, decoded)] = load(pairs, image_size=8, num_classes=3)
    assert image.shape == (8, 8, 1) and decoded.shape == (8, 8, 1)
    np.testing.assert_allclose(image, 1.0)
    assert set(np.unique(decoded)) == {0.0, 2.0}


def test_image_and_mask_of_different_sizes_name_both_files(tmp_path):
    pairs = [(save(tmp_path / "images" / "a.png", np.zeros((12, 10), np.uint8)), empty_mask(tmp_path, (9, 10)))]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"a.png is 12x10 but mask .*m.png is 9x10"):
        load(pairs)


@pytest.mark.parametrize("params, message", [
    ({"palette": [[0, 0, 0]]}, "^palette has 1 colours but num_classes=3 needs 3$"),
    ({"palette": [[0, 0, 0], [1, 1, 1], [0, 0, 0]]}, "^palette gives classes 0 and 2 the same colour"),
    ({"palette": [[0, 0, 0], [1, 1, 300], [2, 2, 2]]}, r"^palette\[1\] must be \[r, g, b\] .*"
                                                       r"Received: palette\[1\]=\[1, 1, 300\]$"),
    ({"ignore_index": 2}, "^ignore_index must not be a class id"),
    ({"normalize": "unit"}, "^normalize must be one of scale, minmax, zscore, dataset"),
    ({"normalize": "dataset", "mean": [0.1, 0.2], "std": [1.0]}, r"^mean must be a number or 1 finite"),
])
def test_bad_mask_and_normalisation_settings_are_config_errors(tmp_path, params, message):
    pairs = [(save(tmp_path / "images" / "i.png", np.zeros((2, 2), np.uint8)), empty_mask(tmp_path, (2, 2)))]
    with pytest.raises(ConfigError, match=message):
        load(pairs, num_classes=3, **params)


def test_make_batches_crops_masks_for_valid_padding_models():
    splits = make_synthetic_splits(image_size=40, channels=1, num_classes=1, seed=3, num_train=6, num_val=3)
    image, mask = next(iter(make_batches(splits.train, 2, shuffle=True, seed=0, label_size=24)))
    assert image.shape == (2, 40, 40, 1) and mask.shape == (2, 24, 24, 1)


def test_building_batches_leaves_the_process_random_state_alone():
    import tensorflow as tf

    from unetlab.data.pipeline import make_batches

    pairs = tf.data.Dataset.range(6).map(lambda i: (tf.fill([4, 4, 1], tf.cast(i, tf.float32)), tf.zeros([4, 4, 1])))
    tf.random.set_seed(3)
    expected = tf.random.uniform([2]).numpy()
    tf.random.set_seed(3)
    for shuffle in (False, True):
        next(iter(make_batches(pairs, 2, shuffle=shuffle, seed=0)))
    assert (tf.random.uniform([2]).numpy() == expected).all()


def test_validation_batches_that_would_not_split_evenly_over_the_devices_are_refused():
    pairs = tf.data.Dataset.from_tensor_slices((tf.zeros((6, 8, 8, 1)), tf.zeros((6, 8, 8, 1))))
    assert len(list(make_batches(pairs, 4, shuffle=False, seed=0, multiple_of=2))) == 2  # 4 + 2
    with pytest.raises(UnevenBatches, match=r"^6 pairs do not split evenly over 4 replicas \(batches of 4, the last "
                                            r"of 2\)$"):
        make_batches(pairs, 4, shuffle=False, seed=0, multiple_of=4)
