"""Segmentation scores from a confusion matrix (NumPy): Dice, IoU, precision, recall, pixel error.

Conventions match `unetlab.metrics`: a binary model is scored on class 1; for K
classes the summary is the mean over classes 1..K-1 (class 0 = background), and
every class is also reported. A class absent from truth and prediction scores 1.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, prediction: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """Counts[c_true, c_pred] over all pixels (ignored pixels left out); binary models use 2 classes."""
    size = max(num_classes, 2)
    truth, prediction = np.asarray(truth).ravel(), np.asarray(prediction).ravel()
    keep = truth != ignore_index if ignore_index is not None else np.ones_like(truth, bool)
    return np.bincount(truth[keep] * size + prediction[keep], minlength=size * size).reshape(size, size)


def scores(confusion: np.ndarray) -> dict[str, float]:
    """Summary and per-class scores of a confusion matrix."""
    confusion = confusion.astype(np.float64)
    hits = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    fp, fn = predicted - hits, actual - hits
    per_class = {
        "dice": _ratio(2 * hits, 2 * hits + fp + fn),
        "iou": _ratio(hits, hits + fp + fn),
        "precision": _ratio(hits, predicted),
        "recall": _ratio(hits, actual),
    }
    foreground = slice(1, None)
    result = {name: float(values[foreground].mean()) for name, values in per_class.items()}
    total = confusion.sum()
    result["pixel_error"] = float(1.0 - hits.sum() / total) if total else 0.0
    result["pixel_accuracy"] = 1.0 - result["pixel_error"]
    if len(hits) > 2:
        for name in ("dice", "iou"):
            result.update({f"{name}_class{c}": float(v) for c, v in enumerate(per_class[name])})
    return result


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-12), 1.0)
