"""The decision layer (`unetlab.decision`) in TensorFlow ops, for the self-contained export: calibration,
the threshold or argmax, and the component rules of `unetlab.components`, traceable inside one
tf.function and convertible to ONNX (tf2onnx), with the NumPy versions' results.

Components are labelled by propagation: every pixel of a class starts with its own id (H x W minus its flat
index, so the largest id of a component is its first pixel in scan order, as scipy numbers them), takes the
largest id among itself and its 4 neighbours of the same class, and the id of the pixel its id names
(pointer jumping), until nothing changes; a component then carries one id. That takes about as many rounds
as the longest path inside a component (hundreds on a 512 x 512 membrane map, about a second), so a model
without rules skips it. A class's holes are the pixels of the other class that a flood from the border
through everything but that class does not reach.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from .components import Rule, other_class
from .decision import EPSILON, Decision


def calibrated(probabilities: tf.Tensor, temperature: Sequence[float]) -> tf.Tensor:
    """`unetlab.decision.calibrate` of (H, W, K) float32 probabilities (K known when traced)."""
    if not len(temperature):
        return probabilities
    t = tf.constant(temperature, tf.float32)
    clipped = tf.clip_by_value(probabilities, EPSILON, 1 - EPSILON)
    if probabilities.shape[-1] == 1:
        return tf.sigmoid((tf.math.log(clipped) - tf.math.log(1 - clipped)) / t)
    return tf.nn.softmax(tf.math.log(clipped) / t, axis=-1)


def class_map(probabilities: tf.Tensor, channels: int, threshold: float | None) -> tf.Tensor:
    """`unetlab.decision.class_map` of (H, W, K) probabilities -> (H, W) int32 class ids."""
    cut = 0.5 if threshold is None else threshold
    if channels == 1:
        return tf.cast(probabilities[..., 0] >= cut, tf.int32)
    if channels == 2 and threshold is not None:
        return tf.cast(probabilities[..., 1] >= cut, tf.int32)
    return tf.cast(tf.argmax(probabilities, axis=-1), tf.int32)


def decided(probabilities: tf.Tensor, decision: Decision, channels: int) -> tf.Tensor:
    """The mask (H, W) int32 of calibrated probabilities (H, W, K), as `Decision.classes`."""
    classes = class_map(probabilities, channels, decision.threshold)
    for rule in decision.rules:
        classes = applied(rule, classes, max(2, channels))
    return classes


def applied(rule: Rule, classes: tf.Tensor, num_classes: int) -> tf.Tensor:
    """`Rule.apply` on an (H, W) int32 class map."""
    other = other_class(rule.label, num_classes)
    mask = tf.equal(classes, rule.label)
    if rule.rule == "fill_holes":
        holes = tf.equal(classes, other) & ~_reached_from_border(~mask)
        return tf.where(holes, rule.label, classes)
    labels = _components(mask)
    count = tf.size(labels) + 1
    sizes = tf.tensor_scatter_nd_add(tf.zeros([count], tf.int32), tf.reshape(labels, [-1, 1]),
                                     tf.ones([count - 1], tf.int32))
    sizes = tf.concat([[0], sizes[1:]], axis=0)  # id 0: not the class
    if rule.rule == "keep_largest":  # of equal sizes, the largest id: the first component in scan order
        ids = tf.range(count, dtype=tf.int64)
        largest = tf.argmax(tf.cast(sizes, tf.int64) * tf.cast(count, tf.int64) + ids)
        drop = mask & tf.not_equal(labels, tf.cast(largest, tf.int32))
    else:
        drop = mask & (tf.gather(sizes, labels) < rule.size)
    return tf.where(drop, other, classes)


def _neighbour_max(values: tf.Tensor) -> tf.Tensor:
    """Each pixel's maximum over itself and its 4 neighbours (0 beyond the border)."""
    padded = tf.pad(values, [[1, 1], [1, 1]])
    return tf.reduce_max(tf.stack([values, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2],
                                   padded[1:-1, 2:]]), axis=0)


def _components(mask: tf.Tensor) -> tf.Tensor:
    """(H, W) int32: one id per 4-connected component of `mask`, 0 elsewhere (module docstring)."""
    shape = tf.shape(mask)
    pixels = shape[0] * shape[1]
    start = tf.where(mask, tf.reshape(pixels - tf.range(pixels), shape), 0)  # id N - index: 1 .. N

    def step(labels, _):
        grown = tf.where(mask, _neighbour_max(labels), 0)
        jumped = tf.gather(tf.reshape(grown, [-1]), tf.minimum(pixels - grown, pixels - 1))  # the pixel of id
        grown = tf.where(mask, tf.maximum(grown, jumped), 0)
        return grown, tf.reduce_any(tf.not_equal(grown, labels))

    labels, _ = tf.while_loop(lambda _, changed: changed, step, [start, tf.constant(True)])
    return labels


def _reached_from_border(mask: tf.Tensor) -> tf.Tensor:
    """The pixels of `mask` connected (4-neighbours, inside `mask`) to one on the border."""
    shape = tf.shape(mask)
    rows, columns = tf.range(shape[0])[:, None], tf.range(shape[1])[None, :]
    border = (rows == 0) | (rows == shape[0] - 1) | (columns == 0) | (columns == shape[1] - 1)
    start = tf.cast(mask & border, tf.int32)

    def step(reached, _):
        grown = tf.where(mask, _neighbour_max(reached), 0)
        return grown, tf.reduce_any(tf.not_equal(grown, reached))

    reached, _ = tf.while_loop(lambda _, changed: changed, step, [start, tf.constant(True)])
    return reached > 0
