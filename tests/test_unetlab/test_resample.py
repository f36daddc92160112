"""Resampling to a target spacing and back: label sets kept, smooth images close, order 0 across thick slices."""

import numpy as np
import pytest

from unetlab.data.resample import (coarse_axis, resample_image, resample_labels, resample_to_shape,
                                   target_shape)
from unetlab.errors import ConfigError


def labelled_volume(shape=(24, 40, 36)):
    """Non-consecutive labels (0, 2, 5), so an interpolated in-between value would show."""
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, np.uint8)
    labels[((z - 12) ** 2 + (y - 20) ** 2 + (x - 18) ** 2) < 100] = 2
    labels[4:9, 5:15, 20:30] = 5
    return labels


def smooth_image(shape, channels=2):
    grids = np.meshgrid(*[np.linspace(0, 1, size) for size in shape], indexing="ij")
    first = np.sin(2 * grids[0]) * np.cos(2 * grids[-1])
    return np.stack([first, sum(grids)] + [first] * (channels - 2), axis=-1).astype(np.float32)


def test_target_shape_rounds_each_axis_and_keeps_at_least_one_voxel():
    assert target_shape((10, 7, 1), (1, 1, 1), (3, 0.5, 2)) == (3, 14, 1)
    assert target_shape((100, 200), (0.7, 0.7), (0.7, 0.7)) == (100, 200)


def test_target_shape_rejects_a_spacing_of_the_wrong_rank_or_sign():
    with pytest.raises(ConfigError, match="target_spacing"):
        target_shape((10, 10, 10), (1, 1, 1), (1, 1))
    with pytest.raises(ConfigError, match="spacing"):
        target_shape((10, 10), (0, 1), (1, 1))


def test_labels_resampled_coarser_and_back_keep_their_label_set_and_shape():
    labels = labelled_volume()
    spacing, coarse = (1.0, 0.8, 0.8), (1.6, 1.5, 1.5)
    down = resample_labels(labels, spacing, coarse)
    assert down.shape == target_shape(labels.shape, spacing, coarse) == (15, 21, 19)
    assert down.dtype == np.uint8 and set(np.unique(down)) == {0, 2, 5}
    assert resample_labels(down, coarse, spacing).shape == (24, 39, 36)  # rounding: 21 * 1.5 / 0.8 = 39.4
    back = resample_labels(down, coarse, spacing, shape=labels.shape)  # so going back names the shape
    assert back.shape == labels.shape
    assert set(np.unique(back)) == {0, 2, 5}
    assert (back == labels).mean() > 0.95


def test_resampling_labels_to_their_own_spacing_changes_nothing():
    labels = labelled_volume()
    assert np.array_equal(resample_labels(labels, (1, 2, 2), (1, 2, 2)), labels)


def test_a_smooth_image_resampled_there_and_back_stays_close():
    image = smooth_image((20, 30, 30))
    spacing, coarse = (1.0, 1.0, 1.0), (1.5, 1.4, 1.3)
    down = resample_image(image, spacing, coarse)
    assert down.shape == (13, 21, 23, 2) and down.dtype == np.float32
    back = resample_to_shape(down, image.shape[:-1], order=3, spacing=coarse, target_spacing=spacing)
    assert back.shape == image.shape
    assert np.abs(back - image).max() < 0.05


def test_anisotropic_spacing_resamples_the_coarse_axis_with_nearest_neighbour():
    image = np.zeros((8, 16, 16, 1), np.float32)
    image[4:] = 1.0  # a step along z
    assert coarse_axis((5.0, 1.0, 1.0)) == 0 and coarse_axis((1.0, 1.0, 1.0)) is None
    finer = resample_image(image, (5.0, 1.0, 1.0), (2.5, 1.0, 1.0))
    assert finer.shape == (16, 16, 16, 1)
    assert set(np.unique(finer)) == {0.0, 1.0}  # still a step: no spline overshoot across the slices
    assert np.array_equal(finer[:, 0, 0, 0], np.repeat([0.0, 1.0], 8))
    isotropic = resample_image(image, (2.0, 1.0, 1.0), (1.0, 1.0, 1.0))  # order 3 along z there
    assert len(np.unique(isotropic)) > 2


def test_anisotropic_labels_keep_their_values_and_in_plane_axes_still_use_splines():
    labels = labelled_volume((6, 40, 36))
    down = resample_labels(labels, (4.0, 0.8, 0.8), (4.0, 1.1, 1.1))
    assert down.shape == (6, 29, 26) and set(np.unique(down)) <= {0, 2, 5}
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32)[None, None, :, None], (4, 16, 16, 1))
    resampled = resample_image(np.ascontiguousarray(ramp), (4.0, 1.0, 1.0), (4.0, 1.0, 0.75))
    assert len(np.setdiff1d(np.unique(resampled), np.arange(16))) > 0  # new in-between values in-plane


def test_2d_images_and_labels_resample_on_the_same_path():
    image = smooth_image((30, 40), channels=3)
    down = resample_image(image, (0.5, 0.5), (1.0, 0.8))
    assert down.shape == (15, 25, 3)
    labels = labelled_volume((1, 40, 36))[0]
    back = resample_labels(resample_labels(labels, (1, 1), (2, 2)), (2, 2), (1, 1))
    assert back.shape == labels.shape and set(np.unique(back)) <= {0, 2, 5}


def test_probabilities_go_back_to_the_original_shape_and_still_sum_to_one():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(10, 12, 14, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    original = resample_to_shape(probabilities, (23, 17, 31), order=1, spacing=(2, 1, 1),
                                 target_spacing=(0.9, 0.7, 0.5))
    assert original.shape == (23, 17, 31, 3) and original.dtype == np.float32
    assert np.allclose(original.sum(-1), 1.0, atol=1e-5) and original.min() >= 0


def test_resample_to_shape_rejects_a_shape_of_the_wrong_rank():
    with pytest.raises(ConfigError, match="spatial axes"):
        resample_to_shape(np.zeros((4, 4, 1)), (4, 4, 4))
