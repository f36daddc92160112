"""Segmentation metrics: Dice, IoU and pixel accuracy, accumulated over an epoch.

Dice and IoU count true/false positives and false negatives per class over all
pixels (voxels of a 3D batch) seen since the last reset (not a mean of per-batch
scores), after a 0.5 threshold (sigmoid head) or an argmax (softmax head). For a binary model the
score is that of the foreground (class 1); for K classes `dice` and `iou` are
the mean over classes 1..K-1 (class 0 is background) and `dice_class<c>` /
`iou_class<c>` report each class. A class absent from both truth and prediction
scores 1.

`ignore_index` (None = off): pixels whose true class id equals it count for no
metric (neither as truth nor as prediction). Binary truth must be 0/1 there.
"""

from __future__ import annotations

import keras
from keras import ops

from .labels import check_ignore_index
from .names import metric_names


@keras.saving.register_keras_serializable(package="unetlab")
class OverlapScore(keras.metrics.Metric):
    """Dice (`kind="dice"`) or IoU (`kind="iou"`) from epoch-level pixel counts."""

    def __init__(self, kind: str = "dice", num_classes: int = 1, class_id: int | None = None,
                 threshold: float = 0.5, name: str | None = None, dtype=None, ignore_index: int | None = None):
        if kind not in ("dice", "iou"):
            raise ValueError(f"kind must be 'dice' or 'iou'. Received: kind={kind!r}")
        super().__init__(name=name or kind, dtype=dtype)
        self.kind, self.num_classes, self.class_id, self.threshold = kind, num_classes, class_id, threshold
        self.ignore_index = check_ignore_index(ignore_index, num_classes)
        slots = max(num_classes, 2)
        self.true_positive = self.add_variable(shape=(slots,), initializer="zeros", name="true_positive")
        self.false_positive = self.add_variable(shape=(slots,), initializer="zeros", name="false_positive")
        self.false_negative = self.add_variable(shape=(slots,), initializer="zeros", name="false_negative")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth, prediction = predicted_classes(y_true, y_pred, self.threshold)
        truth, weight = pixel_weights(truth, sample_weight, self.ignore_index, self.dtype)
        slots = max(self.num_classes, 2)
        truth = ops.one_hot(ops.reshape(truth, (-1,)), slots, dtype=self.dtype)
        prediction = ops.one_hot(ops.reshape(prediction, (-1,)), slots, dtype=self.dtype)
        if weight is not None:
            weight = ops.reshape(weight, (-1, 1))
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
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind, "num_classes": self.num_classes,
                "class_id": self.class_id, "threshold": self.threshold, "ignore_index": self.ignore_index}


@keras.saving.register_keras_serializable(package="unetlab")
class PixelAccuracy(keras.metrics.Metric):
    """Fraction of (not ignored) pixels whose predicted class is the true class, over the epoch."""

    def __init__(self, num_classes: int = 1, threshold: float = 0.5, name: str = "pixel_accuracy", dtype=None,
                 ignore_index: int | None = None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes, self.threshold = num_classes, threshold
        self.ignore_index = check_ignore_index(ignore_index, num_classes)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth, prediction = predicted_classes(y_true, y_pred, self.threshold)
        truth, weight = pixel_weights(truth, sample_weight, self.ignore_index, self.dtype)
        correct = ops.cast(ops.equal(truth, prediction), self.dtype)
        if weight is None:
            weight = ops.ones_like(correct)
        self.correct.assign_add(ops.sum(correct * weight))
        self.total.assign_add(ops.sum(weight))

    def result(self):
        return ops.where(self.total > 0, self.correct / ops.maximum(self.total, 1e-12), 0.0)

    def reset_state(self):
        for variable in (self.correct, self.total):
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "threshold": self.threshold,
                "ignore_index": self.ignore_index}


def predicted_classes(y_true, y_pred, threshold: float = 0.5):
    """Integer class maps (batch, *spatial) of the truth and of the thresholded/argmaxed prediction."""
    truth = ops.cast(ops.squeeze(y_true, axis=-1), "int32")
    if y_pred.shape[-1] == 1:
        prediction = ops.cast(y_pred[..., 0] >= threshold, "int32")
    else:
        prediction = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    return truth, prediction


def pixel_weights(truth, sample_weight, ignore_index: int | None, dtype):
    """(truth with ignored pixels set to 0, per-pixel weights shaped like `truth` (batch, *spatial) or None).

    Weights are `sample_weight` (per image or per pixel) times 0 for pixels of class `ignore_index`.
    """
    weight, rank = None, len(truth.shape)
    if sample_weight is not None:
        weight = ops.cast(sample_weight, dtype)
        if len(weight.shape) == rank + 1:  # a channel axis
            weight = ops.squeeze(weight, axis=-1)
        while len(weight.shape) < rank:
            weight = ops.expand_dims(weight, -1)
        weight = ops.broadcast_to(weight, ops.shape(truth))
    if ignore_index is not None:
        ignored = ops.equal(truth, ignore_index)
        valid = ops.cast(ops.logical_not(ignored), dtype)
        weight = valid if weight is None else weight * valid
        truth = ops.where(ignored, ops.zeros_like(truth), truth)
    return truth, weight


def build_metrics(num_classes: int, ignore_index: int | None = None) -> list[keras.metrics.Metric]:
    """The metrics every run reports, one per training name of `unetlab.names.metric_names` but "loss":
    dice, iou, pixel_accuracy (+ dice_class<c> and iou_class<c> for K > 1).

    Pixels whose true class is `ignore_index` count for none of them.
    """
    ignore_index = check_ignore_index(ignore_index, num_classes)
    metrics: list[keras.metrics.Metric] = []
    for name in metric_names(num_classes):
        if name == "loss" or name.startswith("val_"):
            continue
        if name == "pixel_accuracy":
            metrics.append(PixelAccuracy(num_classes, name=name, ignore_index=ignore_index))
        else:  # dice, iou, dice_class<c>, iou_class<c>
            kind, _, class_id = name.partition("_class")
            metrics.append(OverlapScore(kind, num_classes, int(class_id) if class_id else None, name=name,
                                        ignore_index=ignore_index))
    return metrics
