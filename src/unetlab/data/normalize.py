"""Normalisation of decoded images (values of `decode_image`), for training and for prediction.

`normalize` is one of `unetlab.names.NORMALIZE`:

- `"scale"` (default): integers divided by their type's maximum (255, 65535) -> [0, 1];
  float images are used as stored (that part is `decode_image`'s; "scale" adds nothing);
- `"minmax"`: per image, (x - min) / (max - min) over all pixels and channels;
- `"zscore"`: per image, (x - mean) / std over all pixels and channels;
- `"dataset"`: (x - mean[c]) / std[c] per channel, with the mean and std of the
  `"scale"` values over the training images (`dataset_statistics`).

The training pipeline and `unetlab.preprocessing.Preprocessing.apply` (prediction) both
call `normalize_image`, so an image is normalised the same way in both.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..errors import ConfigError, DataError
from ..names import NORMALIZE, check_choice
from .decode import decode_image

_EPSILON = 1e-6


def normalize_image(image, normalize: str = "scale", mean=None, std=None):
    """Normalise a decoded image (H, W, C) as `normalize` says (see the module docstring).

    `image` may be a tensor or a NumPy array; "dataset" needs the training `mean` and `std`
    (one per channel, or one number).
    """
    check_choice("normalize", normalize, NORMALIZE)
    if normalize == "scale":
        return image
    if normalize == "minmax":
        low, high = tf.reduce_min(image), tf.reduce_max(image)
        return (image - low) / tf.maximum(high - low, _EPSILON)
    if normalize == "zscore":
        return (image - tf.reduce_mean(image)) / tf.maximum(tf.math.reduce_std(image), _EPSILON)
    _check_statistics_given(mean, std)
    return (image - tf.constant(mean, tf.float32)) / tf.maximum(tf.constant(std, tf.float32), _EPSILON)


def check_normalize(normalize: str, channels: int, mean=None, std=None):
    """Validate `normalize` and, for "dataset", `mean`/`std` (a number or one per channel) -> lists or None."""
    check_choice("normalize", normalize, NORMALIZE)
    if normalize != "dataset":
        return None, None
    _check_statistics_given(mean, std)
    values = []
    for name, given in (("mean", mean), ("std", std)):
        array = np.asarray(given, dtype=np.float64).reshape(-1)
        if array.size == 1:
            array = np.repeat(array, channels)
        if array.size != channels or not np.isfinite(array).all():
            raise ConfigError(f"{name} must be a number or {channels} finite number(s) (one per channel). "
                              f"Received: {name}={given!r}")
        if name == "std" and (array <= 0).any():
            raise ConfigError(f"std must be > 0. Received: std={given!r}")
        values.append([float(v) for v in array])
    return values[0], values[1]


def _check_statistics_given(mean, std) -> None:
    if mean is None or std is None:
        raise ConfigError(f"mean and std are the training statistics that normalize='dataset' needs (see "
                          f"dataset_statistics). Received: mean={mean!r}, std={std!r}")


def dataset_statistics(source, *, channels: int | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images of `source`, over all their pixels.

    `source` is a list of (image path, mask path) pairs (read at full resolution, values as
    `normalize="scale"` gives them) or a `tf.data.Dataset` of images or (image, mask) pairs.
    Returns (mean, std) as lists of floats, one per channel: what `normalize="dataset"`
    subtracts and divides by. Accumulated in float64.
    """
    if isinstance(source, tf.data.Dataset):
        dataset = source.map(lambda *element: element[0]) if isinstance(source.element_spec, tuple) else source
        names = None
    else:
        paths = [pair[0] if isinstance(pair, (tuple, list)) else pair for pair in source]
        if not paths:
            raise DataError("dataset_statistics needs at least one image")
        dataset = tf.data.Dataset.from_tensor_slices(paths).map(lambda path: decode_image(path, channels),
                                                                num_parallel_calls=tf.data.AUTOTUNE,
                                                                deterministic=True)
        names = paths

    def sums(image):
        values = tf.cast(image, tf.float64)
        return (tf.reduce_sum(values, axis=[0, 1]), tf.reduce_sum(tf.square(values), axis=[0, 1]),
                tf.cast(tf.shape(values)[0] * tf.shape(values)[1], tf.float64))

    total = total_squares = None
    count = 0.0
    for index, (image_sum, image_squares, pixels) in enumerate(dataset.map(sums).as_numpy_iterator()):
        if total is None:
            total, total_squares = np.zeros_like(image_sum), np.zeros_like(image_squares)
        elif image_sum.shape != total.shape:
            where = f"{names[index]} has" if names else f"image {index} has"
            raise DataError(f"{where} {image_sum.shape[0]} channel(s), the images before it {total.shape[0]}")
        total += image_sum
        total_squares += image_squares
        count += pixels
    if total is None or count == 0:
        raise DataError("dataset_statistics needs at least one non-empty image")
    mean = total / count
    std = np.sqrt(np.maximum(total_squares / count - mean**2, 0.0))
    return [float(v) for v in mean], [float(v) for v in std]
