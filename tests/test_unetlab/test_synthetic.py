"""Synthetic shapes: a function of the seed, validation apart from training, honouring size, channels, classes."""

import numpy as np
import pytest

from unetlab.data import make_synthetic_splits
from unetlab_samples import as_arrays


def synthetic(**overrides):
    params = dict(image_size=32, channels=1, num_classes=1, seed=3, num_train=6, num_val=3)
    return make_synthetic_splits(**{**params, **overrides})


def test_synthetic_data_is_a_function_of_the_seed():
    first, again, other = as_arrays(synthetic().train), as_arrays(synthetic().train), as_arrays(synthetic(seed=4).train)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_synthetic_validation_images_differ_from_training_images():
    splits = synthetic()
    train, val = as_arrays(splits.train)[0], as_arrays(splits.val)[0]
    assert not any(np.array_equal(v, t) for v in val for t in train)


@pytest.mark.parametrize("size, channels, num_classes", [(32, 1, 1), (48, 3, 4), (64, 2, 2)])
def test_synthetic_honours_size_channels_and_classes(size, channels, num_classes):
    images, masks = as_arrays(synthetic(image_size=size, channels=channels, num_classes=num_classes,
                                        num_train=12).train)
    assert images.shape == (12, size, size, channels) and masks.shape == (12, size, size, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0
    classes = set(np.unique(masks).astype(int))
    assert classes <= set(range(max(num_classes, 2))) and len(classes) >= 2
    assert 0.02 < (masks > 0).mean() < 0.7  # shapes cover part of the image


def test_synthetic_mask_is_not_a_copy_of_the_image():
    images, masks = as_arrays(synthetic(noise=0.15).train)
    inside, outside = images[masks[..., 0] > 0], images[masks[..., 0] == 0]
    assert inside.mean() > outside.mean() + 0.1  # learnable contrast...
    assert ((images > 0.5) != (masks > 0)).mean() > 0.02  # ...but thresholding the image is not enough


@pytest.mark.parametrize("num_classes", [1, 3])
def test_synthetic_volumes_hold_solid_shapes_brighter_than_their_background(num_classes):
    """dims=3: volumes (D, H, W, C) of a seed, their shapes 3D objects (several slices deep) with contrast."""
    images, masks = as_arrays(synthetic(dims=3, image_size=24, num_classes=num_classes, num_train=4).train)
    again, _ = as_arrays(synthetic(dims=3, image_size=24, num_classes=num_classes, num_train=4).train)
    assert images.shape == (4, 24, 24, 24, 1) and masks.shape == (4, 24, 24, 24, 1)
    np.testing.assert_array_equal(images, again)
    assert set(np.unique(masks).astype(int)) <= set(range(max(num_classes, 2)))
    assert 0.02 < (masks > 0).mean() < 0.5
    for mask in masks[..., 0] > 0:  # every volume: objects span depth as well as height and width
        assert mask.any(axis=(1, 2)).sum() >= 4 and mask.any(axis=(0, 2)).sum() >= 4 and mask.any(axis=(0, 1)).sum() >= 4
    assert images[masks[..., 0] > 0].mean() > images[masks[..., 0] == 0].mean() + 0.1


def test_synthetic_images_are_unchanged_by_the_volume_option():
    """The 2D images a seed gives stay those of the 2D-only generator: dims=2 is the default and the same."""
    plain, explicit = as_arrays(synthetic().train), as_arrays(synthetic(dims=2).train)
    np.testing.assert_array_equal(plain[0], explicit[0])
    assert plain[0].shape == (6, 32, 32, 1)
