"""`decision.postprocess=auto` for models of planned cases (data=nnunet): at the end of training, nnU-Net's
postprocessing search (`unetlab.components.choose`: keep the largest component, remove components under
`decision.min_sizes` voxels, fill holes, each per class where it raises the class's mean Dice) on the
run's validation cases, predicted whole as task=predict predicts them (sliding window at the training
spacing, `predict.overlap`, mirroring with `predict.tta`, back on each case's own grid).

The rules go into the run's `preprocessing.json` as its decision (`unetlab.decision.Decision`, rules only:
these models take the argmax), so task=predict and task=evaluate apply them; the param
`decision_postprocessing` says which, and `val_case_dice_before_postprocessing` /
`val_case_dice_after_postprocessing` what they did on the validation cases (mean over the foreground
classes; as nnU-Net, rules are tried on those only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np

from unetlab.components import choose
from unetlab.data import Splits
from unetlab.decision import Decision

from . import builders, tracking
from .decision_fit import RULES
from .schema import Config

log = logging.getLogger(__name__)

DICE_BEFORE, DICE_AFTER = "val_case_dice_before_postprocessing", "val_case_dice_after_postprocessing"  # metrics


def applies(config: Config, splits: Splits) -> bool:
    """`decision.postprocess=auto`, a model of planned cases, and validation cases to choose on."""
    return (config.decision.postprocess.value == "auto" and splits.preprocessing.planned
            and bool(splits.val_files))


def validation_cases(config: Config, model, splits: Splits) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(predicted class maps, labels) of the run's validation cases, each on its own grid."""
    from unetlab.data.nnunet_raw import read_case, read_raw_dataset
    from unetlab.volume_inference import predict_case

    dataset, wanted, settings = read_raw_dataset(config.data.root), set(splits.val_files), builders.case_prediction_settings(config)
    cut = Decision()  # the class maps as inference cuts them, before any rule
    classes, truths = [], []
    for case in (case for case in dataset.cases if case.name in wanted):
        image, truth, spacing, _ = read_case(case, dataset)
        probabilities = predict_case(model, image, spacing, splits.preprocessing, **settings)
        classes.append(cut.classes(probabilities))
        truth = np.asarray(truth, np.int64)
        ignored = dataset.ignore_label
        truths.append(truth if ignored is None else np.where(truth == ignored, -1, truth))  # -1: not scored
    return classes, truths


def record(config: Config, model, splits: Splits, preprocessing_path: Path) -> Decision:
    """Choose the rules on the validation cases, store them in `preprocessing.json` (and its artifact, when
    checkpoints are logged) and log them; returns the decision."""
    classes, truths = validation_cases(config, model, splits)
    num_classes = max(2, splits.preprocessing.num_classes)
    rules, dice = choose(classes, truths, num_classes, config.decision.min_sizes,
                         labels=range(1, num_classes))  # the foreground classes: label 0 is the background
    fitted = Decision(rules=tuple(rules))
    splits.preprocessing.decision = fitted.as_dict()
    splits.preprocessing.save(preprocessing_path)
    if config.tracking.log_checkpoints:
        mlflow.log_artifact(str(preprocessing_path), tracking.CHECKPOINTS)
    before, after = (float(np.mean([pair[i] for pair in dice.values()])) for i in (0, 1))
    tracking.retry_locked(mlflow.log_params, {RULES: fitted.describe_rules()})
    tracking.retry_locked(mlflow.log_metrics, {DICE_BEFORE: before, DICE_AFTER: after})
    log.info("postprocessing chosen on %d validation case(s): %s (mean Dice %.4f -> %.4f)", len(classes),
             fitted.describe_rules(), before, after)
    return fitted
