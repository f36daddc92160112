"""Segmentation metrics: Dice, IoU and pixel accuracy, accumulated over an epoch.

Dice and IoU count true/false positives and false negatives per class over all
pixels seen since the last reset (not a mean of per-batch scores), after a 0.5
threshold (sigmoid head) or an argmax (softmax head). For a binary model the
score is that of the foreground (class 1); for K classes `dice` and `iou` are
the mean over classes 1..K-1 (class 0 is background) and `dice_class<c>` /
`iou_class<c>` report each class. A class absent from both truth and prediction
scores 1.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="unetlab")
class OverlapScore(keras.metrics.Metric):
    """Dice (`kind="dice"`) or IoU (`kind="iou"`) from epoch-level pixel counts."""

    def __init__(self, kind: str = "dice", num_classes: int = 1, class_id: int | None = None,
                 threshold: float = 0.5, name: str | None = None, dtype=None):
        if kind not in ("dice", "iou"):
            raise ValueError(f"kind must be 'dice' or 'iou'. Received: kind={kind!r}")
        super().__init__(name=name or kind, dtype=dtype)
        self.kind, self.num_classes, self.class_id, self.threshold = kind, num_classes, class_id, threshold
        slots = max(num_classes, 2)
        self.true_positive = self.add_variable(shape=(slots,), initializer="zeros", name="true_positive")
        self.false_positive = self.add_variable(shape=(slots,), initializer="zeros", name="false_positive")
        self.false_negative = self.add_variable(shape=(slots,), initializer="zeros", name="false_negative")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth, prediction = predicted_classes(y_true, y_pred, self.threshold)
        slots = max(self.num_classes, 2)
        truth = ops.one_hot(ops.reshape(truth, (-1,)), slots, dtype=self.dtype)
        prediction = ops.one_hot(ops.reshape(prediction, (-1,)), slots, dtype=self.dtype)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, self.dtype), (-1, 1))
            truth, prediction = truth * weight, prediction * weight
        hits = ops.sum(truth * prediction, axis=0)
        self.true_positive.assign_add(hits)
        self.false_positive.assign_add(ops.sum(prediction, axis=0) - hits)
        self.false_negative.assign_add(ops.sum(truth, axis=0) - hits)

    def per_class(self):
        """Score of every class (index = class id; a binary model has classes 0 and 1)."""
        tp, fp, fn = self.true_positive, self.false_positive, self.false_negative
        if self.kind == "dice":
            numerator, denominator = 2.0 * tp, 2.0 * tp + fp + fn
        else:
            numerator, denominator = tp, tp + fp + fn
        return ops.where(denominator > 0, numerator / ops.maximum(denominator, 1.0), 1.0)

    def result(self):
        scores = self.per_class()
        if self.class_id is not None:
            return scores[self.class_id]
        return scores[1] if self.num_classes <= 2 else ops.mean(scores[1:])

    def reset_state(self):
        for variable in (self.true_positive, self.false_positive, self.false_negative):
            variable.assign(ops.zeros_like(variable))

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind, "num_classes": self.num_classes,
                "class_id": self.class_id, "threshold": self.threshold}


def predicted_classes(y_true, y_pred, threshold: float = 0.5):
    """Integer class maps (batch, H, W) of the truth and of the thresholded/argmaxed prediction."""
    truth = ops.cast(ops.squeeze(y_true, axis=-1), "int32")
    if y_pred.shape[-1] == 1:
        prediction = ops.cast(y_pred[..., 0] >= threshold, "int32")
    else:
        prediction = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    return truth, prediction


def build_metrics(num_classes: int) -> list[keras.metrics.Metric]:
    """The metrics every run reports: dice, iou, pixel_accuracy (+ per class for K > 1)."""
    metrics: list[keras.metrics.Metric] = [
        OverlapScore("dice", num_classes),
        OverlapScore("iou", num_classes),
        keras.metrics.BinaryAccuracy(name="pixel_accuracy") if num_classes == 1
        else keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
    ]
    if num_classes > 1:
        metrics += [OverlapScore(kind, num_classes, class_id, name=f"{kind}_class{class_id}")
                    for kind in ("dice", "iou") for class_id in range(num_classes)]
    return metrics
