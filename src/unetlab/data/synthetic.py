"""Synthetic segmentation data generated from a seed: no files, no download.

Each image holds 1..`max_shapes` ellipses, rectangles and diamonds with a
striped texture on a smooth, noisy background. Binary masks mark every shape;
with `num_classes=K` a shape's class is 1 + (its kind mod K-1), so classes
differ in outline and brightness. Rendering uses stateless random ops seeded by
(seed, image index), so image i is the same in every run, epoch and process.
"""

from __future__ import annotations

import math

import tensorflow as tf

KINDS = ("ellipse", "rectangle", "diamond")
VAL_OFFSET = 1_000_000  # validation images use indices that training never reaches


def render_sample(index, *, image_size: int, channels: int, num_classes: int, seed: int,
                  max_shapes: int = 4, noise: float = 0.15):
    """Image (H, W, channels) float32 in [0, 1] and mask (H, W, 1) float32 of class ids."""
    keys = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)]), 12)
    size = image_size
    coords = tf.linspace(0.0, 1.0, size)
    yy, xx = tf.meshgrid(coords, coords, indexing="ij")

    present = tf.random.stateless_uniform([max_shapes], keys[0]) < 0.7
    present = tf.tensor_scatter_nd_update(present, [[0]], [True])
    kind = tf.random.stateless_uniform([max_shapes], keys[1], 0, len(KINDS), dtype=tf.int32)
    centre = tf.random.stateless_uniform([max_shapes, 2], keys[2], 0.15, 0.85)
    radius = tf.random.stateless_uniform([max_shapes, 2], keys[3], 0.07, 0.2)
    if num_classes == 1:
        shape_class = tf.ones([max_shapes], tf.int32)
    else:
        shape_class = 1 + kind % (num_classes - 1)

    label = tf.zeros([size, size], tf.int32)
    for i in range(max_shapes):
        dy = (yy - centre[i, 0]) / radius[i, 0]
        dx = (xx - centre[i, 1]) / radius[i, 1]
        inside = tf.stack([dy**2 + dx**2 <= 1.0,
                           tf.maximum(tf.abs(dy), tf.abs(dx)) <= 1.0,
                           tf.abs(dy) + tf.abs(dx) <= 1.0])[kind[i]]
        label = tf.where(inside & present[i], shape_class[i], label)

    # Background: smooth low-frequency field; shapes: brighter, striped, level by class.
    coarse = tf.random.stateless_normal([1, 6, 6, 1], keys[4])
    background = 0.3 + 0.08 * tf.image.resize(coarse, [size, size], method="bicubic")[0, ..., 0]
    angle = tf.random.stateless_uniform([], keys[5], 0.0, math.pi)
    frequency = tf.random.stateless_uniform([], keys[6], 12.0, 24.0)
    stripes = tf.sin(2 * math.pi * frequency * (xx * tf.cos(angle) + yy * tf.sin(angle)))
    level = 0.45 + 0.3 * tf.cast(label, tf.float32) / float(max(num_classes - 1, 1))
    foreground = level + 0.08 * stripes
    image = tf.where(label > 0, foreground, background)
    image = image + noise * tf.random.stateless_normal([size, size], keys[7])
    gains = tf.random.stateless_uniform([channels], keys[8], 0.7, 1.0)
    image = tf.clip_by_value(image[..., None] * gains, 0.0, 1.0)
    return image, tf.cast(label[..., None], tf.float32)


def make_synthetic_dataset(num_images: int, *, image_size: int, channels: int = 1, num_classes: int = 1,
                           seed: int = 0, max_shapes: int = 4, noise: float = 0.15,
                           first_index: int = 0) -> tf.data.Dataset:
    """Dataset of `num_images` (image, mask) pairs, rendered in parallel on the fly."""
    render = lambda index: render_sample(index, image_size=image_size, channels=channels,  # noqa: E731
                                         num_classes=num_classes, seed=seed, max_shapes=max_shapes, noise=noise)
    indices = tf.data.Dataset.range(first_index, first_index + num_images)
    return indices.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
