"""The names the library accepts and reports: one list per choice, and the metric names.

Pure Python (no TensorFlow), so the runner's config schema builds its enums from these
lists and checks the monitored metric's name without importing the library's heavy modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

POOLING = ("max", "conv")  # unetlab.models.build_unet(pooling=)
UPSAMPLING = ("nearest", "transpose")  # build_unet(upsampling=)
PADDING = ("same", "valid")  # build_unet(padding=)
BLOCKS = ("plain", "residual")  # build_unet(block=): two 3x3 convolutions, or with a shortcut (ResUNet)
NORMALIZE = ("scale", "minmax", "zscore", "dataset")  # unetlab.data.normalize_image(normalize=)
# Per-channel normalisation of planned cases (unetlab.data.volume_cache.normalize_channels): per-image z-score,
# z-score inside the non-zero region, CT (clip to the foreground percentiles, foreground mean/std)
VOLUME_NORMALIZATION = ("zscore", "zscore_nonzero", "ct")
SCHEDULES = ("constant", "cosine", "poly", "plateau")  # unetlab.optim.build_optimizer(schedule=)
TTA = ("none", "flips", "d4")  # unetlab.inference.predict_image(tta=)
# A binary cell/membrane map: as predicted, unetlab.postprocess.Watershed, or (auto) the watershed or none that
# training chose on its validation images (unetlab.postprocess.choose)
POSTPROCESS = ("none", "watershed", "auto")
# The decision layer (unetlab.decision), fitted on the validation split after training: per-class temperature
# scaling or none; the score a binary model's threshold maximises (rand: the ISBI 2012 challenge's Rand error,
# youden: sensitivity + specificity - 1, accuracy: 1 - the pixel error)
CALIBRATION = ("none", "temperature")
DECISION_OBJECTIVES = ("dice", "f1", "rand", "youden", "accuracy")
# unetlab.components' rules on the class map: none, or (auto) the ones training chose on its validation images
DECISION_POSTPROCESS = ("none", "auto")
# The raw image a self-contained export takes (unetlab.graph_inference.serving_function): integers are scaled
# to [0, 1] by their type's maximum, as training decoded them; float32 is taken as it is
EXPORT_INPUT_DTYPES = ("uint8", "uint16", "float32")
PREDICT_FORMATS = ("masks", "challenge")  # task=predict: a mask PNG per image, or the ISBI 2012 submission stack
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")  # Keras dtype policies, or unetlab.precision.resolve's
DISTRIBUTION = ("none", "data_parallel")  # unetlab.distribution: one device, or replicas on every device
OBJECTS = ("foreground", "background")  # the class whose connected components are the objects (cells)

METRICS = ("loss", "dice", "iou", "pixel_accuracy")  # what a model compiled by unetlab reports

HEADS = ("sigmoid", "softmax", "any")  # the head a loss needs: num_classes=1, num_classes >= 2, either


@dataclass(frozen=True)
class LossName:
    """One loss of the registry: the `unetlab.losses` class that computes it, the head it needs
    (one of `HEADS`), and what it is, in a line (the config reference and `--help` show it)."""

    cls: str
    head: str
    help: str


# The losses, by the name `build_loss(name)`, `loss=NAME` and the docs use: the one list of them. A
# sigmoid and a softmax form of one loss share a class (it reads the head from the prediction).
LOSS_NAMES: dict[str, LossName] = {
    "bce": LossName("Crossentropy", "sigmoid", "binary cross-entropy"),
    "ce": LossName("Crossentropy", "softmax", "categorical cross-entropy"),
    "dice": LossName("DiceLoss", "any", "1 - soft Dice"),
    "bce_dice": LossName("CrossentropyDiceLoss", "sigmoid", "binary cross-entropy + (1 - soft Dice)"),
    "ce_dice": LossName("CrossentropyDiceLoss", "softmax", "categorical cross-entropy + (1 - soft Dice)"),
    "focal": LossName("FocalLoss", "any", "focal loss, Lin et al. 2017: down-weights easy pixels"),
    "tversky": LossName("TverskyLoss", "any", "1 - Tversky index: false positives and negatives weighed apart"),
    "weighted_bce": LossName("WeightedCrossentropy", "sigmoid", "the U-Net paper's border-weighted cross-entropy"),
    "weighted_ce": LossName("WeightedCrossentropy", "softmax", "the U-Net paper's border-weighted cross-entropy"),
    "weighted_bce_dice": LossName("WeightedCrossentropyDice", "sigmoid", "weighted_bce + an unweighted Dice term"),
    "weighted_ce_dice": LossName("WeightedCrossentropyDice", "softmax", "weighted_ce + an unweighted Dice term"),
}


def losses_for(head: str) -> tuple[str, ...]:
    """The loss names that need `head` ("sigmoid" or "softmax"; "any" fits both)."""
    check_choice("head", head, HEADS)
    return tuple(name for name, loss in LOSS_NAMES.items() if loss.head == head)


def check_choice(argument: str, value, choices: tuple[str, ...]):
    """`value` if it is one of `choices`, else ConfigError naming `argument` and the choices."""
    if value not in choices:
        raise ConfigError(f"{argument} must be one of {', '.join(choices)}. Received: {argument}={value!r}")
    return value


def metric_names(num_classes: int) -> list[str]:
    """Every metric name Keras reports for a model of `num_classes` (training and `val_` forms)."""
    names = list(METRICS)
    if num_classes > 1:
        names += [f"{metric}_class{c}" for metric in ("dice", "iou") for c in range(num_classes)]
    return names + [f"val_{name}" for name in names]
