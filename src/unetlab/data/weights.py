"""Per-pixel loss weights: the border weight map of the U-Net paper (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

`w_c` balances the class frequencies of the mask (pixels / (classes present x pixels of the
class), or 1 without `class_balance`). `d1` and `d2` are the distances to the nearest and the
second-nearest object, an object being a 4-connected component of the `objects` class: the
cells between membranes are the background's components (ISBI 2012), nuclei the foreground's.
The border term is added to the pixels between objects, so the thin gaps separating touching
objects weigh most. Ignored pixels (`ignore_index`) weigh 0.

SciPy labels the objects (`ndimage.label`) and measures distances (`ndimage.distance_transform_edt`)
one object at a time, inside its bounding box grown by the distance past which the border term
is below `TOLERANCE` x w0: exact there, and fast on masks with hundreds of cells.
`add_weight_maps` computes the map of every mask of a tf.data pipeline once, before its cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy import ndimage

from ..errors import ConfigError
from ..names import OBJECTS, check_choice

TOLERANCE = 1e-4  # border terms below TOLERANCE * w0 are left out


@dataclass(frozen=True)
class BorderWeights:
    """The weight map's settings: w0 and sigma (pixels) of the border term, the objects' class
    ("foreground" or "background") and whether w_c balances the class frequencies."""

    w0: float = 10.0
    sigma: float = 5.0
    objects: str = "foreground"
    class_balance: bool = True

    def __post_init__(self):
        if not self.w0 >= 0:
            raise ConfigError(f"w0 must be >= 0. Received: w0={self.w0!r}")
        if not self.sigma > 0:
            raise ConfigError(f"sigma must be > 0 pixels. Received: sigma={self.sigma!r}")
        check_choice("objects", self.objects, OBJECTS)


def border_weight_map(labels: np.ndarray, settings: BorderWeights, ignore_index: int | None = None) -> np.ndarray:
    """The weight map (H, W) float32 of a class-id mask `labels` (H, W)."""
    labels = np.asarray(labels)
    valid = labels != ignore_index if ignore_index is not None else np.ones(labels.shape, bool)
    weights = _class_weights(labels, valid) if settings.class_balance else valid.astype(np.float64)
    if settings.w0 > 0:
        objects = (labels == 0) if settings.objects == "background" else (labels > 0)
        objects &= valid
        nearest, second = _two_nearest_objects(objects, _reach(settings))
        border = settings.w0 * np.exp(-np.square(nearest + second) / (2 * settings.sigma ** 2))
        weights += np.where(~objects & valid, border, 0.0)
    return weights.astype(np.float32)


def _class_weights(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """w_c: valid pixels / (classes present x pixels of the class); 0 where ignored."""
    classes, counts = np.unique(labels[valid], return_counts=True)
    weights = np.zeros(labels.shape, np.float64)
    for value, count in zip(classes, counts):
        weights[(labels == value) & valid] = valid.sum() / (len(classes) * count)
    return weights


def _reach(settings: BorderWeights) -> int:
    """The distance d past which w0 * exp(-d**2 / (2 sigma**2)) < TOLERANCE * w0 (d1 + d2 >= d2 > d)."""
    return math.ceil(settings.sigma * math.sqrt(2 * math.log(1 / TOLERANCE)))


def _two_nearest_objects(objects: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances (H, W) to the nearest and second-nearest object; inf past `reach` of an object."""
    cells, _ = ndimage.label(objects)
    nearest = np.full(objects.shape, np.inf)
    second = np.full(objects.shape, np.inf)
    for index, box in enumerate(ndimage.find_objects(cells), start=1):
        window = tuple(slice(max(part.start - reach, 0), part.stop + reach) for part in box)
        distance = ndimage.distance_transform_edt(cells[window] != index)
        near, sec = nearest[window], second[window]  # views: updated in place
        sec[...] = np.where(distance < near, near, np.minimum(sec, distance))
        near[...] = np.minimum(near, distance)
    return nearest, second


def add_weight_maps(dataset: tf.data.Dataset, settings: BorderWeights,
                    ignore_index: int | None = None) -> tf.data.Dataset:
    """(image, mask (H, W, 1)) pairs -> (image, mask (H, W, 2)): the weight map as the mask's second
    channel, so patches, augmentation and crops move it with the mask (`make_batches` splits it off)."""
    def add(image, mask):
        weights = tf.numpy_function(lambda labels: border_weight_map(labels[..., 0], settings, ignore_index),
                                    [mask], tf.float32, stateful=False)
        weights = tf.ensure_shape(weights, mask.shape[:-1])[..., None]
        return image, tf.concat([mask, tf.cast(weights, mask.dtype)], axis=-1)

    return dataset.map(add, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
