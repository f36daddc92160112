"""Per-case segmentation metrics of 2D or 3D masks, distances in millimetres through the voxel spacing.

- `dice` and `iou` of one class's binary masks;
- `hausdorff95`: the 95th percentile Hausdorff distance between the masks' surfaces, as MONAI computes
  it (`compute_hausdorff_distance(percentile=95)`): the larger of the two directed 95th percentiles;
- `surface_dice`: the normalised surface Dice at a tolerance (Nikolov et al. 2021, "Clinically applicable
  segmentation of head and neck anatomy for radiotherapy", JMIR 23(7):e26151): the share of both
  surfaces within `tolerance` mm of the other, counted over surface voxels (the paper weighs surface
  elements by their area; on voxel surfaces the two agree closely).

A surface voxel is a foreground voxel with a background neighbour (full connectivity) or on the array's
border. Distances come from exact Euclidean distance transforms with `sampling=spacing` (scipy).
Empty masks: both empty is a perfect match (Dice 1, distances 0); one empty gives Dice 0 and infinite
distances, which `case_scores` reports as such.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(prediction, truth).sum() / total)


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    union = np.logical_or(prediction, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(prediction, truth).sum() / union)


def surface(mask: np.ndarray) -> np.ndarray:
    """The mask's surface voxels (module docstring)."""
    mask = np.asarray(mask, bool)
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def surface_distances(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]):
    """(distances of the prediction's surface voxels to the truth's surface, and the other way), in mm."""
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != np.ndim(prediction):
        raise ValueError(f"spacing must give one value per axis of the masks ({np.ndim(prediction)}). "
                         f"Received: spacing={spacing}")
    ours, theirs = surface(prediction), surface(truth)
    to_theirs = ndimage.distance_transform_edt(~theirs, sampling=spacing)
    to_ours = ndimage.distance_transform_edt(~ours, sampling=spacing)
    return to_theirs[ours], to_ours[theirs]


def hausdorff95(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """The 95th percentile Hausdorff distance in mm (module docstring)."""
    empty = (not np.any(prediction), not np.any(truth))
    if all(empty):
        return 0.0
    if any(empty):
        return float("inf")
    forward, backward = surface_distances(prediction, truth, spacing)
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))


def surface_dice(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float], tolerance: float) -> float:
    """The normalised surface Dice at `tolerance` mm (module docstring)."""
    empty = (not np.any(prediction), not np.any(truth))
    if all(empty):
        return 1.0
    if any(empty):
        return 0.0
    forward, backward = surface_distances(prediction, truth, spacing)
    return float(((forward <= tolerance).sum() + (backward <= tolerance).sum()) / (len(forward) + len(backward)))


def case_scores(classes: np.ndarray, truth: np.ndarray, spacing: Sequence[float], num_classes: int,
                tolerance: float = 1.0) -> dict[str, float]:
    """Per foreground class c (1..K-1; 1 for a binary model), dice_c, iou_c, hd95_c (mm) and surface_dice_c at
    `tolerance` mm of a case's predicted class ids against its truth; with one foreground class, unsuffixed."""
    foreground = range(1, max(num_classes, 2))
    scores = {}
    for c in foreground:
        predicted, actual = classes == c, truth == c
        suffix = "" if len(foreground) == 1 else f"_{c}"
        scores.update({f"dice{suffix}": dice(predicted, actual), f"iou{suffix}": iou(predicted, actual),
                       f"hd95{suffix}": hausdorff95(predicted, actual, spacing),
                       f"surface_dice{suffix}": surface_dice(predicted, actual, spacing, tolerance)})
    return scores
