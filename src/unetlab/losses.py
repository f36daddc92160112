"""Segmentation losses, selected by name from `LOSSES` (`build_loss(name)`), named in `unetlab.names.LOSS_NAMES`.

Every loss takes `y_true` as class ids of shape (batch, H, W, 1) (0/1 for a
binary model) and `y_pred` as probabilities (batch, H, W, C) from the model's
sigmoid (C = 1) or softmax (C = K) head, and returns one value per image; volumes
(batch, D, H, W, C) alike, every voxel a pixel (`spatial_axes`).
Region losses (Dice, Tversky) are computed per image and class, then averaged
over the classes (the foreground channel only, for a binary model).
All are registered Keras objects, so a saved model reloads with its loss.

`ignore_index` (every loss; None = off): pixels whose class id equals it are left
out. Pixel losses (cross-entropy, focal) are the mean over the other pixels of
each image (0 for an image with every pixel ignored); region losses leave them
out of the true/false positive and false negative sums. The data pipeline keeps
such pixels at that value (and binary masks at 0/1 elsewhere), so `ignore_index=255`
never counts as foreground.
"""

from __future__ import annotations

import keras
from keras import ops

from .errors import ConfigError
from .labels import check_ignore_index
from .names import LOSS_NAMES, check_choice

_EPSILON = 1e-7


def spatial_axes(x, channels: bool = True) -> tuple[int, ...]:
    """The spatial axes of `x`, (batch, *spatial, C) or without the channel axis (batch, *spatial): (1, 2) for
    images, (1, 2, 3) for volumes."""
    rank = len(x.shape)
    return tuple(range(1, rank - 1 if channels else rank))


def valid_pixels(y_true, ignore_index: int | None):
    """(weights (batch, H, W, 1), 1 where scored and 0 where ignored, or None; y_true with ignored pixels set to 0)."""
    if ignore_index is None:
        return None, y_true
    ignored = ops.equal(y_true, ops.cast(ignore_index, y_true.dtype))
    return ops.cast(ops.logical_not(ignored), "float32"), ops.where(ignored, ops.zeros_like(y_true), y_true)


def _pixel_mean(pixel, weight):
    """Mean of `pixel` (batch, *spatial) per image, over the pixels of weight 1 when a weight is given."""
    axes = spatial_axes(pixel, channels=False)
    if weight is None:
        return ops.mean(pixel, axis=axes)
    weight = ops.cast(weight[..., 0], pixel.dtype)
    return ops.sum(pixel * weight, axis=axes) / ops.maximum(ops.sum(weight, axis=axes), 1.0)


def one_hot_targets(y_true, y_pred):
    """Class-id targets as float targets shaped like `y_pred` (one-hot when C > 1)."""
    num_channels = y_pred.shape[-1]
    if num_channels == 1:
        return ops.cast(y_true, y_pred.dtype)
    ids = ops.cast(ops.squeeze(y_true, axis=-1), "int32")
    return ops.one_hot(ids, num_channels, dtype=y_pred.dtype)


def crossentropy_per_image(y_true, y_pred, ignore_index: int | None = None, pixel_weight=None):
    """Pixel-mean binary (C = 1) or categorical (C = K) cross-entropy (ignored pixels left out),
    each pixel's term multiplied by `pixel_weight` (batch, H, W) when given."""
    weight, y_true = valid_pixels(y_true, ignore_index)
    y_pred = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
    target = one_hot_targets(y_true, y_pred)
    if y_pred.shape[-1] == 1:
        pixel = -(target * ops.log(y_pred) + (1.0 - target) * ops.log(1.0 - y_pred))
    else:
        pixel = -target * ops.log(y_pred)
    pixel = ops.sum(pixel, axis=-1)
    if pixel_weight is not None:
        pixel = pixel * ops.cast(ops.reshape(pixel_weight, ops.shape(pixel)), pixel.dtype)
    return _pixel_mean(pixel, weight)


def tversky_index(y_true, y_pred, alpha: float, beta: float, smooth: float, ignore_index: int | None = None):
    """Soft Tversky index per image and class; alpha = beta = 0.5 is soft Dice (ignored pixels left out)."""
    weight, y_true = valid_pixels(y_true, ignore_index)
    target = one_hot_targets(y_true, y_pred)
    predicted = y_pred
    if weight is not None:
        weight = ops.cast(weight, y_pred.dtype)
        target, predicted = target * weight, y_pred * weight
    axes = spatial_axes(y_pred)
    true_positive = ops.sum(target * y_pred, axis=axes)
    false_positive = ops.sum((1.0 - target) * predicted, axis=axes)
    false_negative = ops.sum(target * (1.0 - y_pred), axis=axes)
    return (true_positive + smooth) / (true_positive + alpha * false_positive + beta * false_negative + smooth)


def dice_loss_per_image(y_true, y_pred, smooth: float, ignore_index: int | None = None):
    """1 - soft Dice per image, averaged over the classes."""
    return 1.0 - ops.mean(tversky_index(y_true, y_pred, 0.5, 0.5, smooth, ignore_index), axis=-1)


def focal_per_image(y_true, y_pred, gamma: float, alpha: float, ignore_index: int | None = None):
    """Pixel-mean focal loss (Lin et al. 2017); `alpha` weighs the positive class of a binary model."""
    weight, y_true = valid_pixels(y_true, ignore_index)
    y_pred = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
    target = one_hot_targets(y_true, y_pred)
    if y_pred.shape[-1] == 1:
        p_true = target * y_pred + (1.0 - target) * (1.0 - y_pred)
        class_weight = target * alpha + (1.0 - target) * (1.0 - alpha)
        pixel = -class_weight * (1.0 - p_true) ** gamma * ops.log(p_true)
    else:
        pixel = -target * (1.0 - y_pred) ** gamma * ops.log(y_pred)
    return _pixel_mean(ops.sum(pixel, axis=-1), weight)


class SegmentationLoss(keras.losses.Loss):
    """Base class: keeps the constructor parameters (and `ignore_index`) for `get_config`."""

    default_name = "loss"

    def __init__(self, name: str | None = None, reduction: str = "sum_over_batch_size", dtype=None,
                 ignore_index: int | None = None, **params):
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)
        self.ignore_index = check_ignore_index(ignore_index, num_classes=None)  # the loss does not know the classes
        self.params = params

    def get_config(self) -> dict:
        return {**super().get_config(), **self.params, "ignore_index": self.ignore_index}


@keras.saving.register_keras_serializable(package="unetlab")
class Crossentropy(SegmentationLoss):
    """Cross-entropy on class ids: binary for a sigmoid head (`bce`), categorical for softmax (`ce`)."""

    default_name = "ce"

    def call(self, y_true, y_pred):
        return crossentropy_per_image(y_true, y_pred, self.ignore_index)


@keras.saving.register_keras_serializable(package="unetlab")
class DiceLoss(SegmentationLoss):
    """1 - soft Dice, averaged over classes."""

    default_name = "dice"

    def __init__(self, smooth: float = 1.0, **kwargs):
        super().__init__(smooth=smooth, **kwargs)

    def call(self, y_true, y_pred):
        return dice_loss_per_image(y_true, y_pred, self.params["smooth"], self.ignore_index)


@keras.saving.register_keras_serializable(package="unetlab")
class CrossentropyDiceLoss(DiceLoss):
    """Cross-entropy + (1 - soft Dice): `bce_dice` for sigmoid heads, `ce_dice` for softmax."""

    default_name = "ce_dice"

    def call(self, y_true, y_pred):
        return crossentropy_per_image(y_true, y_pred, self.ignore_index) + super().call(y_true, y_pred)


@keras.saving.register_keras_serializable(package="unetlab")
class FocalLoss(SegmentationLoss):
    """Focal loss: cross-entropy scaled by (1 - p_true)**gamma."""

    default_name = "focal"

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, **kwargs):
        super().__init__(gamma=gamma, alpha=alpha, **kwargs)

    def call(self, y_true, y_pred):
        return focal_per_image(y_true, y_pred, self.params["gamma"], self.params["alpha"], self.ignore_index)


@keras.saving.register_keras_serializable(package="unetlab")
class TverskyLoss(SegmentationLoss):
    """1 - Tversky index (alpha weighs false positives, beta false negatives)."""

    default_name = "tversky"

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0, **kwargs):
        super().__init__(alpha=alpha, beta=beta, smooth=smooth, **kwargs)

    def call(self, y_true, y_pred):
        p = self.params
        index = tversky_index(y_true, y_pred, p["alpha"], p["beta"], p["smooth"], self.ignore_index)
        return 1.0 - ops.mean(index, axis=-1)


class PixelWeightedLoss(SegmentationLoss):
    """Base class of losses weighted per pixel by the data's weight maps, which Keras passes as
    sample weights (batch, H, W) (`unetlab.data.make_batches(weights=...)`; metrics stay
    unweighted). Without weights (e.g. data without maps) the loss is unweighted.

    `w0`, `sigma` and `class_balance` describe the maps (`unetlab.data.weights.BorderWeights`):
    kept in the loss's config so a saved model says what it was trained on; the data makes them.
    """

    REDUCTIONS = ("sum_over_batch_size", "sum", "none", None)  # what `__call__` reduces per-image values by

    def __init__(self, w0: float = 10.0, sigma: float = 5.0, class_balance: bool = True, **kwargs):
        super().__init__(w0=w0, sigma=sigma, class_balance=class_balance, **kwargs)
        if self.reduction not in self.REDUCTIONS:
            raise ConfigError(f"reduction must be one of sum_over_batch_size, sum, none for a pixel-weighted loss. "
                              f"Received: reduction={self.reduction!r}")

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The pixel weights travel to `call` as a second channel of `y_true`, so that Keras' own
        `Loss.__call__` reduces the per-image values (and, under `tf.distribute`, divides the mean
        by the replicas, as Keras sums the replicas' losses) as it does for every other loss."""
        if sample_weight is not None:
            y_true = ops.convert_to_tensor(y_true, self.dtype)
            sample_weight = ops.reshape(ops.convert_to_tensor(sample_weight, self.dtype), ops.shape(y_true))
            y_true = ops.concatenate([y_true, sample_weight], axis=-1)
        return super().__call__(y_true, y_pred)

    def call(self, y_true, y_pred):
        if y_true.shape[-1] == 2:  # class ids and pixel weights (from `__call__`)
            return self.weighted(y_true[..., :1], y_pred, y_true[..., 1])
        return self.weighted(y_true, y_pred, None)

    def weighted(self, y_true, y_pred, pixel_weight):
        """The loss per image with pixel weights (batch, H, W), or none."""
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="unetlab")
class WeightedCrossentropy(PixelWeightedLoss):
    """Cross-entropy with per-pixel weights: the U-Net paper's loss with its border weight maps
    (`weighted_bce` for sigmoid heads, `weighted_ce` for softmax)."""

    default_name = "weighted_ce"

    def weighted(self, y_true, y_pred, pixel_weight):
        return crossentropy_per_image(y_true, y_pred, self.ignore_index, pixel_weight)


@keras.saving.register_keras_serializable(package="unetlab")
class WeightedCrossentropyDice(PixelWeightedLoss):
    """Weighted cross-entropy + (1 - soft Dice); the Dice term is unweighted (`weighted_bce_dice`, `weighted_ce_dice`)."""

    default_name = "weighted_ce_dice"

    def __init__(self, smooth: float = 1.0, **kwargs):
        super().__init__(smooth=smooth, **kwargs)

    def weighted(self, y_true, y_pred, pixel_weight):
        return (crossentropy_per_image(y_true, y_pred, self.ignore_index, pixel_weight)
                + dice_loss_per_image(y_true, y_pred, self.params["smooth"], self.ignore_index))


# name -> class, from the registry (`unetlab.names.LOSS_NAMES`: the names, heads and help)
LOSSES = {name: globals()[loss.cls] for name, loss in LOSS_NAMES.items()}


def build_loss(name: str, ignore_index: int | None = None, **params) -> keras.losses.Loss:
    """The loss called `name` (a key of LOSSES) with its parameters; pixels of class `ignore_index` are left out."""
    check_choice("name", name, tuple(LOSSES))
    return LOSSES[name](name=name, ignore_index=ignore_index, **params)
