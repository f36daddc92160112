"""The decision layer at the end of training (`decision.calibrate`, `decision.objective`): the best model's
probabilities on the validation split, the temperatures and the binary threshold fitted on them
(`unetlab.decision.fit`), recorded in the run's `preprocessing.json` so that evaluate, predict, the
registered model and the export decide as training chose, and logged: the fitted values as params, the
calibration error before and after as metrics, and a reliability diagram.

Folder data's validation images are predicted whole, at full resolution, with the run's `predict` settings
(tiles, overlap, TTA), as task=predict will; other sources' validation batches as the model saw them.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import mlflow
import numpy as np

from unetlab import decision
from unetlab.data import Splits
from unetlab.data.image_files import read_array
from unetlab.inference import predict_image

from . import builders, tracking
from .schema import Config

log = logging.getLogger(__name__)

TEMPERATURE = f"{tracking.FITTED_PARAM_PREFIX}temperature"  # param: the fitted temperatures ("none": uncalibrated)
THRESHOLD = f"{tracking.FITTED_PARAM_PREFIX}threshold"  # param: the threshold of class 1 a binary model's masks are cut at
RULES = f"{tracking.FITTED_PARAM_PREFIX}postprocessing"  # param: the component rules applied to the class map, in order
ECE_BEFORE, ECE_AFTER = "val_ece", "val_ece_calibrated"  # metrics: the expected calibration error on validation
DIAGRAM = "reliability.png"  # artifact: the reliability diagram before and after calibration


def threshold_param(fitted, num_classes: int) -> str | float:
    """A decision's threshold as the param `THRESHOLD` holds it: the number, or without one "0.5" (a binary
    model) or "argmax" (more classes)."""
    if fitted.threshold is not None:
        return fitted.threshold
    return "0.5" if num_classes <= 2 else "argmax"


def applies(config: Config, splits: Splits) -> bool:
    """Whether training fits a decision layer: one is asked for, on 2D images (not planned patches), with
    validation data."""
    asked = (config.decision.calibrate.value != "none" or config.decision.objective.value != "none"
             or config.decision.postprocess.value == "auto")
    return asked and splits.train_batches is None and splits.num_val > 0


def validation_images(config: Config, model, splits: Splits, val_batches) -> list[tuple[np.ndarray, np.ndarray]]:
    """(probabilities (H, W, K), class ids (H, W), -1 where ignored) of each validation image: folder data's
    at full resolution as task=predict predicts them (`model` open to any input size), else each image of
    the validation batches."""
    ignore = getattr(config.data, "ignore_index", None)
    num_classes = splits.preprocessing.num_classes
    uncalibrated = dataclasses.replace(splits.preprocessing, decision=None)  # the network's own probabilities
    images = []
    if splits.val_pairs:
        for image_path, mask_path in splits.val_pairs:
            probabilities = predict_image(model, read_array(image_path), uncalibrated,
                                          **builders.prediction_settings(config))
            images.append((probabilities, builders.read_classes(mask_path, num_classes, config.data)))
    else:
        for batch_images, masks, *_ in val_batches:
            probabilities = np.asarray(model.predict_on_batch(np.asarray(batch_images)), np.float32)
            images.extend(zip(probabilities, np.asarray(masks)[..., 0].astype(np.int64)))
    return [(p, np.where(labels == ignore, -1, labels) if ignore is not None else labels) for p, labels in images]


def record(config: Config, model, splits: Splits, val_batches, preprocessing_path: Path, output_dir: Path):
    """Fit the decision layer on the validation split, store it in `preprocessing.json` beside the checkpoints
    (and its artifact, when checkpoints are logged) and log it; returns the `unetlab.decision.Decision`."""
    from unetlab.models import with_any_input_size

    open_model = with_any_input_size(model) if splits.val_pairs else model
    images = validation_images(config, open_model, splits, val_batches)
    objective = config.decision.objective.value
    objects = 0 if config.data.objects.value == "background" else 1  # the cells of a membrane map are class 0
    fitted, measured = decision.fit(images, calibrate_with=config.decision.calibrate.value,
                                    objective=None if objective == "none" else objective, objects=objects,
                                    min_sizes=config.decision.min_sizes if config.decision.postprocess.value == "auto"
                                    else None, seed=config.seed)
    splits.preprocessing.decision = fitted.as_dict()
    splits.preprocessing.save(preprocessing_path)
    if config.tracking.log_checkpoints:
        mlflow.log_artifact(str(preprocessing_path), tracking.CHECKPOINTS)
    probabilities, labels = decision.sampled_pixels(images, config.seed)  # the pixels the fit measured
    diagram = Path(output_dir) / DIAGRAM
    decision.reliability_diagram(decision.reliability(probabilities, labels),
                                 decision.reliability(fitted.calibrated(probabilities), labels), diagram,
                                 title=f"validation: ECE {measured['ece_before']:.4f} -> {measured['ece_after']:.4f}")
    mlflow.log_artifact(str(diagram))
    tracking.retry_locked(mlflow.log_params, {
        TEMPERATURE: ",".join(f"{t:.4g}" for t in fitted.temperature) or "none",
        THRESHOLD: threshold_param(fitted, splits.preprocessing.num_classes), RULES: fitted.describe_rules()})
    tracking.retry_locked(mlflow.log_metrics, {
        ECE_BEFORE: measured["ece_before"], ECE_AFTER: measured["ece_after"],
        **{f"val_{name}": value for name, value in measured.items() if not name.startswith("ece_")}})
    log.info("decision layer on %d validation image(s): %s; ECE %.4f -> %.4f%s", len(images), fitted.describe(),
             measured["ece_before"], measured["ece_after"],
             f"; {objective} {measured[f'{objective}_at_0.5']:.4f} at 0.5 -> {measured[f'{objective}_at_threshold']:.4f}"
             if fitted.threshold is not None else "")
    return fitted
