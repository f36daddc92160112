"""The names the library accepts and reports: one list per choice, and the metric names.

Pure Python (no TensorFlow), so the runner's config schema builds its enums from these
lists and checks the monitored metric's name without importing the library's heavy modules.
"""

from __future__ import annotations

from .errors import ConfigError

POOLING = ("max", "conv")  # unetlab.models.build_unet(pooling=)
UPSAMPLING = ("nearest", "transpose")  # build_unet(upsampling=)
PADDING = ("same", "valid")  # build_unet(padding=)
NORMALIZE = ("scale", "minmax", "zscore", "dataset")  # unetlab.data.normalize_image(normalize=)
SCHEDULES = ("constant", "cosine", "plateau")  # unetlab.optim.build_optimizer(schedule=)
TTA = ("none", "flips", "d4")  # unetlab.inference.predict_image(tta=)
DISTRIBUTION = ("none", "data_parallel")  # unetlab.distribution: one device, or replicas on every device
OBJECTS = ("foreground", "background")  # the class whose connected components are the objects (cells)

METRICS = ("loss", "dice", "iou", "pixel_accuracy")  # what a model compiled by unetlab reports


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
