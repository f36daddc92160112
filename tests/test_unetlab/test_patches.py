"""Random training patches and the fixed validation tiling."""

import numpy as np
import pytest
import tensorflow as tf

from unetlab.data.patches import make_patch_sampler, make_tiles, tile_starts
from unetlab.errors import ConfigError
from unetlab_samples import as_arrays


def coordinate_pairs(shapes, blob=None):
    """Images whose two channels are each pixel's row and column, and masks (one foreground blob, or none)."""
    images, masks = [], []
    for height, width in shapes:
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        images.append(np.stack([rows, cols], -1).astype(np.float32))
        mask = np.zeros((height, width, 1), np.float32)
        if blob is not None:
            row, col = blob
            mask[row:row + 3, col:col + 3] = 1
        masks.append(mask)
    if len({shape for shape in shapes}) == 1:
        return tf.data.Dataset.from_tensor_slices((np.stack(images), np.stack(masks)))
    return tf.data.Dataset.from_generator(lambda: zip(images, masks), output_signature=(
        tf.TensorSpec([None, None, 2], tf.float32), tf.TensorSpec([None, None, 1], tf.float32)))


def mirrored(index, size):
    period = max(2 * (size - 1), 1)
    index = index % period
    return np.where(index > size - 1, period - index, index)


def test_random_patches_are_windows_of_the_image_with_their_mask():
    pairs = coordinate_pairs([(40, 30)], blob=(20, 10)).repeat(16)
    for image, mask in pairs.apply(make_patch_sampler(16, seed=0, foreground_oversample=0.5)):
        image, mask = image.numpy(), mask.numpy()
        rows, cols = image[:, 0, 0].astype(int), image[0, :, 1].astype(int)
        assert image.shape == (16, 16, 2) and mask.shape == (16, 16, 1)
        np.testing.assert_array_equal(np.diff(rows), 1)  # a contiguous window...
        np.testing.assert_array_equal(np.diff(cols), 1)
        assert 0 <= rows[0] <= 40 - 16 and 0 <= cols[0] <= 30 - 16  # ...inside the image
        blob = (rows[:, None] >= 20) & (rows[:, None] < 23) & (cols >= 10) & (cols < 13)
        np.testing.assert_array_equal(mask[..., 0], blob)  # the mask moved with the image


def test_images_smaller_than_the_patch_are_mirror_padded():
    pairs = coordinate_pairs([(10, 40)]).repeat(4)
    for image, _ in pairs.apply(make_patch_sampler(16, seed=1)):
        rows = image.numpy()[:, 0, 0]
        np.testing.assert_array_equal(rows, mirrored(np.arange(16) - 3, 10))  # 3 rows mirrored above, 3 below


def foreground_fraction(oversample, seed=0):
    sparse = coordinate_pairs([(64, 64)], blob=(50, 7)).repeat(48)  # 9 of 4096 pixels are foreground
    patches = sparse.apply(make_patch_sampler(16, seed=seed, foreground_oversample=oversample, ignore_index=255))
    return np.mean([mask.numpy().max() > 0 for _, mask in patches])


def test_foreground_oversample_forces_patches_onto_foreground():
    assert foreground_fraction(1.0) == 1.0
    assert foreground_fraction(0.0) < 0.35  # a uniform 16x16 crop hits a 3x3 blob ~13% of the time
    assert foreground_fraction(0.0) < foreground_fraction(0.5) < 1.0


def test_ignored_pixels_are_not_foreground_for_oversampling():
    mask = np.full((1, 64, 64, 1), 255, np.float32)
    mask[0, :, :32] = 0
    pairs = tf.data.Dataset.from_tensor_slices((np.zeros((1, 64, 64, 1), np.float32), mask)).repeat(12)
    patches = pairs.apply(make_patch_sampler(16, seed=0, foreground_oversample=1.0, ignore_index=255))
    assert any(m.numpy().max() == 0 for _, m in patches)  # no foreground: uniform crops, some in the 0 half


def test_patches_repeat_with_the_seed_and_change_every_epoch():
    def run(seed):
        return coordinate_pairs([(40, 30)] * 4, blob=(5, 5)).cache().apply(
            make_patch_sampler(8, seed=seed, foreground_oversample=0.33))

    first = run(3)
    epoch1, epoch2 = as_arrays(first), as_arrays(first)
    again, other = as_arrays(run(3)), as_arrays(run(4))
    np.testing.assert_array_equal(epoch1[0], again[0])
    np.testing.assert_array_equal(epoch1[1], again[1])
    assert not np.array_equal(epoch1[0], epoch2[0])
    assert not np.array_equal(epoch1[0], other[0])


@pytest.mark.parametrize("size, patch_size, starts", [(50, 16, [0, 16, 32, 34]), (48, 16, [0, 16, 32]),
                                                      (16, 16, [0]), (10, 16, [0])])
def test_tile_starts_cover_the_axis_with_the_last_tile_flush(size, patch_size, starts):
    assert tile_starts(size, patch_size) == starts


@pytest.mark.parametrize("shape", [(50, 37), (16, 20), (10, 12)])
def test_validation_tiles_cover_the_image(shape):
    tiles = as_arrays(make_tiles(coordinate_pairs([shape], blob=(2, 3)), 16))
    height, width = shape
    row_starts, col_starts = tile_starts(height, 16), tile_starts(width, 16)
    assert len(tiles[0]) == len(row_starts) * len(col_starts)
    covered = np.zeros(shape, bool)
    for image, mask in zip(*tiles):
        rows, cols = image[:, 0, 0].astype(int), image[0, :, 1].astype(int)
        np.testing.assert_array_equal(image[..., 0], np.repeat(rows[:, None], 16, 1))
        np.testing.assert_array_equal(mask[..., 0], (rows[:, None] >= 2) & (rows[:, None] < 5)
                                      & (cols >= 3) & (cols < 6))
        covered[np.ix_(rows, cols)] = True
    assert covered.all()
    if height < 16:  # centred mirror padding
        np.testing.assert_array_equal(tiles[0][0, :, 0, 0], mirrored(np.arange(16) - (16 - height) // 2, height))


def test_patch_settings_are_checked():
    with pytest.raises(ConfigError, match=r"^patch_size must be a positive integer or null\. Received: patch_size=0$"):
        make_patch_sampler(0, seed=0)
    with pytest.raises(ConfigError, match=r"^foreground_oversample must be a fraction in \[0, 1\]\. "
                                          r"Received: foreground_oversample=1\.5$"):
        make_patch_sampler(16, seed=0, foreground_oversample=1.5)
    with pytest.raises(ConfigError, match=r"^patch_size must be a positive integer"):
        make_tiles(tf.data.Dataset.from_tensor_slices((np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)))), 0)
