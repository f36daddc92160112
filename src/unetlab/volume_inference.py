"""Prediction of whole volumes (and images) of any size with a network trained on patches: nnU-Net's
sliding window (Isensee et al. 2021, Nature Methods 18:203), in any spatial rank.

The case is prepared as training prepared it (`prepare_case`: the channels normalised, resampled to
the plan's spacing), covered by patch-sized windows overlapping by `overlap` (mirror-padded with zeros
where the case is smaller than a patch), each window's prediction weighted by a Gaussian centred on it
(sigma = patch / 8 per axis: a window's border, where the network sees the least context, counts least),
optionally averaged over the flips along every subset of the spatial axes (nnU-Net's mirroring), and
resampled back to the case's own shape:

    probabilities = predict_case(model, image, spacing, preprocessing, overlap=0.5, mirror=True)

`image` is (spatial..., C) at its own `spacing`; the result is (spatial..., K) float32 probabilities
(K = 1: of the foreground) on the image's grid, to be written `like` the input (`volume_files`).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from .data.resample import resample_image, resample_to_shape
from .data.volume_cache import normalize_channels
from .errors import ConfigError, DataError
from .inference import window_starts


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """The window weights (patch...) float32: a Gaussian with sigma = patch * sigma_scale per axis, centred,
    scaled to a maximum of 1 and floored at its smallest positive value (no window weight is 0)."""
    axes = [np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / max(size * sigma_scale, 1e-6)) ** 2) for size in patch]
    weights = axes[0]
    for axis in axes[1:]:
        weights = np.multiply.outer(weights, axis)
    weights = (weights / weights.max()).astype(np.float32)
    return np.maximum(weights, weights[weights > 0].min())


def sliding_window(model, image: np.ndarray, patch: Sequence[int], *, overlap: float = 0.5, batch_size: int = 2,
                   mirror: bool = False) -> np.ndarray:
    """Probabilities (spatial..., K) of `image` (spatial..., C), normalised as in training, from `model`'s
    predictions of Gaussian-weighted windows of size `patch` with `overlap` (module docstring)."""
    patch = tuple(int(size) for size in patch)
    if image.ndim != len(patch) + 1:
        raise DataError(f"image must be (spatial..., channels) with {len(patch)} spatial axes for a patch {patch}. "
                        f"Received: shape={image.shape}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be in [0, 1). Received: overlap={overlap!r}")
    shape = image.shape[:-1]
    padding = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for s, p in zip(shape, patch)]
    padded = np.pad(image, padding + [(0, 0)])
    starts = [window_starts(size, length, max(1, int(length * (1 - overlap))))
              for size, length in zip(padded.shape[:-1], patch)]
    corners = list(itertools.product(*starts))
    weights = gaussian_importance(patch)
    total, norm = None, np.zeros(padded.shape[:-1], np.float32)
    flips = [axes for count in range(len(patch) + 1) for axes in itertools.combinations(range(1, len(patch) + 1), count)
             ] if mirror else [()]
    for first in range(0, len(corners), batch_size):
        chunk = corners[first:first + batch_size]
        windows = np.stack([padded[tuple(slice(c, c + p) for c, p in zip(corner, patch))] for corner in chunk])
        prediction = sum(np.flip(np.asarray(model.predict_on_batch(np.flip(windows, axes)), np.float32), axes)
                         for axes in flips) / len(flips)
        if total is None:
            total = np.zeros(padded.shape[:-1] + prediction.shape[-1:], np.float32)
        for corner, window in zip(chunk, prediction):
            region = tuple(slice(c, c + p) for c, p in zip(corner, patch))
            total[region] += window * weights[..., None]
            norm[region] += weights
    probabilities = total / norm[..., None]
    return probabilities[tuple(slice(before, before + size) for (before, _), size in zip(padding, shape))]


def prepare_case(image: np.ndarray, spacing: Sequence[float], preprocessing) -> np.ndarray:
    """`image` (spatial..., C) normalised per channel and resampled to the training spacing, as the
    volume cache prepared the training cases (`preprocessing`: the run's `Preprocessing`)."""
    image = normalize_channels(np.asarray(image, np.float32), preprocessing.normalization,
                               preprocessing.ct_statistics)
    return resample_image(image, spacing, preprocessing.target_spacing)


def predict_case(model, image: np.ndarray, spacing: Sequence[float], preprocessing, *, overlap: float = 0.5,
                 batch_size: int = 2, mirror: bool = False) -> np.ndarray:
    """Probabilities (spatial..., K) on `image`'s own grid: `prepare_case`, `sliding_window` in the training
    patch, and the result resampled back (linear; order 0 along a coarse axis, as resampling there)."""
    if image.shape[-1] != preprocessing.channels:
        raise DataError(f"image has {image.shape[-1]} channels but the model was trained on {preprocessing.channels}")
    prepared = prepare_case(image, spacing, preprocessing)
    probabilities = sliding_window(model, prepared, preprocessing.patch_size, overlap=overlap,
                                   batch_size=batch_size, mirror=mirror)
    if probabilities.shape[:-1] == image.shape[:-1]:
        return probabilities
    return resample_to_shape(probabilities, image.shape[:-1], order=1, spacing=preprocessing.target_spacing,
                             target_spacing=spacing)
