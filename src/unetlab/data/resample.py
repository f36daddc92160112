"""Resampling to a target voxel spacing and back, as nnU-Net v2 does it (rank-agnostic: 2-D or 3-D).

Arrays have their spatial axes first (z, y, x or y, x), in the order of their `spacing`. Images are
interpolated with cubic splines (order 3), label maps label by label: each label's one-hot mask with
linear splines (order 1), then every voxel takes the label whose mask is highest, so a label map never
gains a value it did not have. Probabilities go back to the original shape with order 1.

Strongly anisotropic data (the coarsest spacing more than `ANISOTROPY_THRESHOLD` times the finest,
on one axis only): the other axes are interpolated slice by slice, and the coarse axis with nearest
neighbour (order 0), as nnU-Net does, so that interpolating across thick slices invents no structure.
Voxel centres stay aligned (`scipy.ndimage.zoom(grid_mode=True)`), and borders repeat the edge voxel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ..errors import ConfigError

ANISOTROPY_THRESHOLD = 3.0


def target_shape(shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> tuple[int, ...]:
    """The spatial shape after resampling `shape` from `spacing` to `target_spacing`:
    round(shape * spacing / target_spacing) per axis, at least 1."""
    spacing, target_spacing = _check_spacing("spacing", spacing, len(shape)), _check_spacing(
        "target_spacing", target_spacing, len(shape))
    return tuple(max(1, int(round(size * old / new))) for size, old, new in zip(shape, spacing, target_spacing))


def coarse_axis(spacing: Sequence[float], target_spacing: Sequence[float] | None = None) -> int | None:
    """The axis resampled with order 0: the one axis whose spacing (the input's, else the target's) is
    more than ANISOTROPY_THRESHOLD times the finest; None when neither is anisotropic, or when more than
    one axis is the coarsest (nnU-Net does not separate two coarse axes)."""
    for candidate in (spacing, target_spacing):
        if candidate is None:
            continue
        values = np.asarray(candidate, dtype=np.float64)
        if values.max() / values.min() > ANISOTROPY_THRESHOLD:
            coarsest = np.flatnonzero(values == values.max())
            return int(coarsest[0]) if coarsest.size == 1 else None
    return None


def resample_to_shape(array: np.ndarray, shape: Sequence[int], *, order: int = 1,
                      spacing: Sequence[float] | None = None,
                      target_spacing: Sequence[float] | None = None) -> np.ndarray:
    """`array` (spatial..., C) resampled channel by channel to the spatial `shape`, float32.

    `order`: the spline order (1 for probabilities at prediction, 3 for images). `spacing` (the array's)
    and `target_spacing` (the result's) only decide whether one axis is resampled with order 0
    (`coarse_axis`); at prediction pass the cached spacing and the original one.
    """
    shape = tuple(int(size) for size in shape)
    if array.ndim != len(shape) + 1:
        raise ConfigError(f"array must be (spatial..., channels) with {len(shape)} spatial axes. "
                          f"Received: array.shape={array.shape}, shape={shape}")
    axis = coarse_axis(spacing, target_spacing) if spacing is not None else None
    channels = [_resample_channel(array[..., channel], shape, order, axis) for channel in range(array.shape[-1])]
    return np.stack(channels, axis=-1)


def resample_image(image: np.ndarray, spacing: Sequence[float], target_spacing: Sequence[float]) -> np.ndarray:
    """`image` (spatial..., C) from `spacing` to `target_spacing` with cubic splines (order 0 along a
    coarse axis), float32; returned unchanged (as float32) when the shape would not change."""
    shape = target_shape(image.shape[:-1], spacing, target_spacing)
    if shape == image.shape[:-1]:
        return image.astype(np.float32, copy=False)
    return resample_to_shape(image, shape, order=3, spacing=spacing, target_spacing=target_spacing)


def resample_labels(labels: np.ndarray, spacing: Sequence[float], target_spacing: Sequence[float],
                    shape: Sequence[int] | None = None) -> np.ndarray:
    """A label map (spatial...) from `spacing` to `target_spacing`, same dtype, no new label values.

    Each label's one-hot mask is resampled with order 1 (order 0 along a coarse axis); each voxel takes
    the label with the highest value (the lowest label on a tie). `shape`: the result's shape instead
    of `target_shape` (going back to an original shape, which rounding may not give).
    """
    shape = target_shape(labels.shape, spacing, target_spacing) if shape is None else tuple(map(int, shape))
    if shape == labels.shape:
        return labels.copy()
    axis = coarse_axis(spacing, target_spacing)
    values = np.unique(labels)
    best = np.full(shape, -1.0, np.float32)
    result = np.full(shape, values[0], labels.dtype)
    for value in values:
        score = _resample_channel((labels == value).astype(np.float32), shape, 1, axis)
        higher = score > best
        best[higher], result[higher] = score[higher], value
    return result


def _resample_channel(array: np.ndarray, shape: tuple[int, ...], order: int, axis: int | None) -> np.ndarray:
    """One channel (spatial...) to `shape`; with `axis`, the other axes slice by slice at `order`, then
    `axis` with order 0."""
    array = array.astype(np.float32, copy=False)
    if axis is None:
        return _zoom(array, shape, order)
    slices = np.moveaxis(array, axis, 0)
    plane_shape = shape[:axis] + shape[axis + 1:]
    planes = np.stack([_zoom(plane, plane_shape, order) for plane in slices])
    planes = _zoom(planes, (shape[axis],) + plane_shape, 0)
    return np.ascontiguousarray(np.moveaxis(planes, 0, axis))


def _zoom(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    if array.shape == shape:
        return array
    factors = [new / old for new, old in zip(shape, array.shape)]
    return ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True, output=np.float32)


def _check_spacing(name: str, spacing, rank: int) -> tuple[float, ...]:
    values = tuple(float(value) for value in spacing)
    if len(values) != rank or not all(np.isfinite(value) and value > 0 for value in values):
        raise ConfigError(f"{name} must be {rank} positive numbers (one per spatial axis). "
                          f"Received: {name}={spacing!r}")
    return values
