"""Patches: training on random crops of full-resolution images, validating on a fixed tiling.

`make_patch_sampler` draws one `random_patch` per (image, mask) pair and pass, a seeded
fraction of them (`foreground_oversample`) centred on a foreground pixel so that rare
classes are seen (as nnU-Net does). `make_tiles` cuts every pair into the fixed tiles that
`tile_starts` places along each axis, so validation covers every pixel once or more.
Images smaller than a patch are mirror-padded.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..errors import ConfigError

# Patch sampling folds these into each element's key; augment.py folds 0..10 into the same
# stream (tf.data.Dataset.random(seed)), so these stay clear of them.
_PATCH_FORCE, _PATCH_ROW, _PATCH_COL, _PATCH_CLASS, _PATCH_PIXEL = range(1001, 1006)


def tile_starts(size: int, patch_size: int) -> list[int]:
    """Start offsets of the tiles along one axis of `size` pixels: 0, P, 2P, ..., size - P.

    Tiles do not overlap except the last, which is flush with the border; an axis
    shorter than P gets one tile (of the mirror-padded image).
    """
    if size <= patch_size:
        return [0]
    count = -(-size // patch_size)
    return [min(i * patch_size, size - patch_size) for i in range(count)]


def _mirror(indices, size):
    """Map indices into [0, size - 1] by mirroring at the borders (reflect, edge not repeated)."""
    period = tf.maximum(2 * (size - 1), 1)
    indices = tf.math.floormod(indices, period)
    return tf.where(indices > size - 1, period - indices, indices)


def _padding(size, patch_size: int):
    """Rows (or columns) added before the image when it is mirror-padded to patch_size, and the padded size."""
    padded = tf.maximum(size, patch_size)
    return (padded - size) // 2, padded


def _crop(array, top, left, patch_size: int, before_rows, before_cols):
    """A patch_size x patch_size window at (top, left) of the mirror-padded `array`."""
    shape = tf.shape(array)
    offsets = tf.range(patch_size)
    rows = _mirror(top - before_rows + offsets, shape[0])
    cols = _mirror(left - before_cols + offsets, shape[1])
    return tf.gather(tf.gather(array, rows, axis=0), cols, axis=1)


def image_tiles(image, mask, patch_size: int):
    """A fixed tiling of one pair: images (N, P, P, C) and masks (N, P, P, 1), rows first.

    Tiles start at `tile_starts` along each axis, so they cover the whole image; an image
    smaller than patch_size along an axis is mirror-padded (centred) along it.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    pair = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)
    offsets = tf.range(patch_size)
    grids = []
    for size in (height, width):
        before, padded = _padding(size, patch_size)
        count = (padded + patch_size - 1) // patch_size
        starts = tf.minimum(tf.range(count) * patch_size, padded - patch_size)
        grids.append(_mirror(starts[:, None] + offsets[None, :] - before, size))  # (count, P)
    rows, cols = grids
    tiles = tf.gather(tf.gather(pair, rows, axis=0), cols, axis=2)  # (nr, P, nc, P, C + 1)
    tiles = tf.transpose(tiles, [0, 2, 1, 3, 4])
    tiles = tf.reshape(tiles, [-1, patch_size, patch_size, tf.shape(pair)[-1]])
    channels = image.shape[-1]
    return tiles[..., :channels], tf.cast(tiles[..., channels:], mask.dtype)


def make_tiles(dataset: tf.data.Dataset, patch_size: int) -> tf.data.Dataset:
    """Every (image, mask) pair of `dataset` cut into its fixed patch_size tiles (`image_tiles`)."""
    patch_size = check_patch_size(patch_size)
    channels = dataset.element_spec[0].shape[-1]

    def tile(image, mask):
        images, masks = image_tiles(image, mask, patch_size)
        images.set_shape([None, patch_size, patch_size, channels])
        masks.set_shape([None, patch_size, patch_size, 1])
        return tf.data.Dataset.from_tensor_slices((images, masks))

    return dataset.flat_map(tile)


def random_patch(image, mask, key, patch_size: int, foreground_oversample: float = 0.0,
                 ignore_index: int | None = None):
    """One random patch_size x patch_size crop of (image, mask); `key` is a shape-[2] seed.

    With probability `foreground_oversample` the crop is centred on a foreground pixel
    (clipped to the image): a foreground class present in the mask is drawn first, then one
    of its pixels (as nnU-Net does), so rare classes get patches too. Otherwise, or when
    the mask has no foreground, the crop is uniform over the image. Foreground is every
    class id > 0 other than `ignore_index`. An image smaller than patch_size is mirror-padded.
    """
    key = tf.convert_to_tensor(key)
    shape = tf.shape(image)
    before_rows, padded_rows = _padding(shape[0], patch_size)
    before_cols, padded_cols = _padding(shape[1], patch_size)

    def uniform():
        top = tf.random.stateless_uniform([], _fold(key, _PATCH_ROW), 0, padded_rows - patch_size + 1, tf.int32)
        left = tf.random.stateless_uniform([], _fold(key, _PATCH_COL), 0, padded_cols - patch_size + 1, tf.int32)
        return top, left

    if foreground_oversample > 0:
        labels = mask[..., 0]
        foreground = labels > 0
        if ignore_index is not None:
            foreground &= tf.not_equal(labels, float(ignore_index))
        pixels = tf.where(foreground)  # (N, 2), row-major: a deterministic order
        force = tf.random.stateless_uniform([], _fold(key, _PATCH_FORCE)) < foreground_oversample

        def on_foreground():
            classes, class_of_pixel = tf.unique(tf.gather_nd(labels, pixels))
            chosen = tf.random.stateless_uniform([], _fold(key, _PATCH_CLASS), 0, tf.size(classes), tf.int32)
            members = tf.where(tf.equal(class_of_pixel, chosen))[:, 0]
            pick = tf.random.stateless_uniform([], _fold(key, _PATCH_PIXEL), 0, tf.size(members), tf.int32)
            centre = tf.cast(tf.gather(pixels, tf.gather(members, pick)), tf.int32)
            top = tf.clip_by_value(centre[0] + before_rows - patch_size // 2, 0, padded_rows - patch_size)
            left = tf.clip_by_value(centre[1] + before_cols - patch_size // 2, 0, padded_cols - patch_size)
            return top, left

        top, left = tf.cond(force & (tf.shape(pixels)[0] > 0), on_foreground, uniform)
    else:
        top, left = uniform()
    patch_image = _crop(image, top, left, patch_size, before_rows, before_cols)
    patch_mask = _crop(mask, top, left, patch_size, before_rows, before_cols)
    patch_image.set_shape([patch_size, patch_size, image.shape[-1]])
    patch_mask.set_shape([patch_size, patch_size, mask.shape[-1]])
    return patch_image, patch_mask


def make_patch_sampler(patch_size: int, seed: int, foreground_oversample: float = 0.0,
                       ignore_index: int | None = None, keyed: bool = False):
    """Return `sample(dataset)`, to use as `dataset.apply(sample)`: one `random_patch` per pair.

    Each pair is zipped with a key from `tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)`, as `unetlab.data.augment.make_augmenter` does: new
    patches every epoch, the same ones in every run with the same seed. `keyed=True` takes
    and returns (key, (image, mask)) elements whose int64 keys the caller chose
    (`make_batches` keys each pair by its pass and position, so a resumed run draws the same).
    Apply it after `cache` (or the first epoch's patches are cached).
    """
    patch_size = check_patch_size(patch_size)
    foreground_oversample = check_foreground_oversample(foreground_oversample)

    @tf.autograph.experimental.do_not_convert
    def crop(key, pair):
        image, mask = pair
        return key, random_patch(image, mask, tf.stack([tf.constant(seed, tf.int64), key]), patch_size,
                                 foreground_oversample, ignore_index)

    return keyed_map(crop, seed, keyed)


def keyed_map(function, seed: int, keyed: bool):
    """`apply(dataset)` mapping `function(key, pair) -> (key, pair)` over the dataset in parallel
    (order kept); unless `keyed`, the pairs get keys from a seeded random stream, dropped after."""
    def apply(dataset: tf.data.Dataset) -> tf.data.Dataset:
        if not keyed:
            keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            dataset = tf.data.Dataset.zip((keys, dataset))
        dataset = dataset.map(function, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset if keyed else dataset.map(lambda key, pair: pair)

    return apply


def _fold(key, index: int):
    return tf.random.experimental.stateless_fold_in(key, index)


def check_patch_size(patch_size) -> int:
    """`patch_size` as an int, or ConfigError unless it is a positive integer."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) or patch_size < 1:
        raise ConfigError(f"patch_size must be a positive integer or null. Received: patch_size={patch_size!r}")
    return int(patch_size)


def check_foreground_oversample(value) -> float:
    """`foreground_oversample` as a float, or ConfigError unless it is a fraction in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ConfigError(f"foreground_oversample must be a fraction in [0, 1]. "
                          f"Received: foreground_oversample={value!r}")
    return float(value)
