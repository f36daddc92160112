"""Synthetic segmentation data generated from a seed: no files, no download.

Each image holds 1..`max_shapes` ellipses, rectangles and diamonds with a
striped texture on a smooth, noisy background. Binary masks mark every shape;
with `num_classes=K` a shape's class is 1 + (its kind mod K-1), so classes
differ in outline and brightness. Rendering uses stateless random ops seeded by
(seed, image index), so image i is the same in every run, epoch and process.
`dims=3` renders volumes (D, H, W) the same way: ellipsoids, boxes and octahedra,
stripes across the (H, W) planes (`data=synthetic3d`).
"""

from __future__ import annotations

import math

import tensorflow as tf

KINDS = ("ellipse", "rectangle", "diamond")
VAL_OFFSET = 1_000_000  # validation images use indices that training never reaches


def render_sample(index, *, image_size: int, channels: int, num_classes: int, seed: int,
                  max_shapes: int = 4, noise: float = 0.15, dims: int = 2):
    """Image (H, W, channels) float32 in [0, 1] and mask (H, W, 1) float32 of class ids; with dims=3
    a volume (D, H, W, channels) and its mask (D, H, W, 1), D = H = W = image_size."""
    keys = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)]), 12)
    size = image_size
    shape = [size] * dims
    coords = tf.linspace(0.0, 1.0, size)
    grid = tf.meshgrid(*[coords] * dims, indexing="ij")  # one coordinate array per axis
    yy, xx = grid[-2:]

    present = tf.random.stateless_uniform([max_shapes], keys[0]) < 0.7
    present = tf.tensor_scatter_nd_update(present, [[0]], [True])
    kind = tf.random.stateless_uniform([max_shapes], keys[1], 0, len(KINDS), dtype=tf.int32)
    centre = tf.random.stateless_uniform([max_shapes, dims], keys[2], 0.15, 0.85)
    low, high = (0.07, 0.2) if dims == 2 else (0.15, 0.3)  # shapes fill about as much of a volume as of an image
    radius = tf.random.stateless_uniform([max_shapes, dims], keys[3], low, high)
    if num_classes == 1:
        shape_class = tf.ones([max_shapes], tf.int32)
    else:
        shape_class = 1 + kind % (num_classes - 1)

    label = tf.zeros(shape, tf.int32)
    for i in range(max_shapes):
        offsets = [(axis - centre[i, a]) / radius[i, a] for a, axis in enumerate(grid)]
        inside = tf.stack([tf.add_n([d**2 for d in offsets]) <= 1.0,
                           tf.reduce_max(tf.abs(tf.stack(offsets)), axis=0) <= 1.0,
                           tf.add_n([tf.abs(d) for d in offsets]) <= 1.0])[kind[i]]
        label = tf.where(inside & present[i], shape_class[i], label)

    # Background: smooth low-frequency field; shapes: brighter, striped, level by class.
    background = 0.3 + 0.08 * _smooth_field(keys[4], size, dims)
    angle = tf.random.stateless_uniform([], keys[5], 0.0, math.pi)
    frequency = tf.random.stateless_uniform([], keys[6], 12.0, 24.0)
    stripes = tf.sin(2 * math.pi * frequency * (xx * tf.cos(angle) + yy * tf.sin(angle)))
    level = 0.45 + 0.3 * tf.cast(label, tf.float32) / float(max(num_classes - 1, 1))
    foreground = level + 0.08 * stripes
    image = tf.where(label > 0, foreground, background)
    image = image + noise * tf.random.stateless_normal(shape, keys[7])
    gains = tf.random.stateless_uniform([channels], keys[8], 0.7, 1.0)
    image = tf.clip_by_value(image[..., None] * gains, 0.0, 1.0)
    return image, tf.cast(label[..., None], tf.float32)


def _smooth_field(key, size: int, dims: int):
    """A smooth random field with `dims` axes of `size`: 6 normal values per axis, upsampled bicubically
    (in 3D: each of the 6 slices along (H, W), then along D)."""
    coarse = tf.random.stateless_normal([1] * (3 - dims) + [6] * dims + [1], key)
    field = tf.image.resize(coarse, [size, size], method="bicubic")[..., 0]  # (1 or 6, size, size)
    if dims == 2:
        return field[0]
    across = tf.transpose(field, [1, 0, 2])[..., None]  # (H, 6, W, 1): D becomes an image axis
    return tf.transpose(tf.image.resize(across, [size, size], method="bicubic")[..., 0], [1, 0, 2])


def make_synthetic_dataset(num_images: int, *, image_size: int, channels: int = 1, num_classes: int = 1,
                           seed: int = 0, max_shapes: int = 4, noise: float = 0.15, first_index: int = 0,
                           dims: int = 2) -> tf.data.Dataset:
    """Dataset of `num_images` (image, mask) pairs (volumes with dims=3), rendered in parallel on the fly."""
    render = lambda index: render_sample(index, image_size=image_size, channels=channels,  # noqa: E731
                                         num_classes=num_classes, seed=seed, max_shapes=max_shapes, noise=noise,
                                         dims=dims)
    indices = tf.data.Dataset.range(first_index, first_index + num_images)
    return indices.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
