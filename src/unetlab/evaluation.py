"""Segmentation scores (NumPy): Dice, IoU, precision, recall and the misclassified share from a
confusion matrix; scikit-image's adapted Rand error and the variation of information between objects.
(The ISBI 2012 challenge's own pixel and Rand errors, from probabilities: `unetlab.challenge`.)

Conventions match `unetlab.metrics`: a binary model is scored on class 1; for K
classes the summary is the mean over classes 1..K-1 (class 0 = background), and
every class is also reported. A class absent from truth and prediction scores 1.

`object_scores` compares the objects (4-connected components of the foreground, or of the
background for cells between membranes) with scikit-image's `adapted_rand_error` and
`variation_of_information`, leaving out the pixels outside the true objects (the membranes),
as the ISBI 2012 challenge's Rand scoring does.
"""

from __future__ import annotations

import numpy as np

from .names import OBJECTS, check_choice


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
    result["misclassified"] = float(1.0 - hits.sum() / total) if total else 0.0
    result["pixel_accuracy"] = 1.0 - result["misclassified"]
    if len(hits) > 2:
        for name in ("dice", "iou"):
            result.update({f"{name}_class{c}": float(v) for c, v in enumerate(per_class[name])})
    return result


def object_scores(truth: np.ndarray, prediction: np.ndarray, objects: str = "foreground",
                  ignore_index: int | None = None) -> dict[str, float]:
    """Adapted Rand error (1 - F-score of Rand precision and recall) and variation of information
    (its split and merge parts, in bits) between the objects of the truth and of the prediction."""
    from skimage.metrics import adapted_rand_error, variation_of_information

    check_choice("objects", objects, OBJECTS)
    true_objects, predicted_objects = (_label_objects(classes, objects, ignore_index) for classes in (truth, prediction))
    error, _, _ = adapted_rand_error(true_objects, predicted_objects, ignore_labels=(0,))
    split, merge = variation_of_information(true_objects, predicted_objects, ignore_labels=(0,))
    return {"adapted_rand_error": float(error), "vi": float(split + merge), "vi_split": float(split),
            "vi_merge": float(merge)}


def _label_objects(classes: np.ndarray, objects: str, ignore_index: int | None) -> np.ndarray:
    """Object ids 1..N of the 4-connected components of the objects' class; 0 elsewhere."""
    from scipy import ndimage

    classes = np.asarray(classes)
    inside = (classes == 0) if objects == "background" else (classes > 0)
    if ignore_index is not None:
        inside &= classes != ignore_index
    return ndimage.label(inside)[0]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-12), 1.0)
