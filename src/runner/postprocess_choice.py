"""`predict.postprocess=auto`: at the end of training, the watershed (or none) of lowest challenge Rand
error on the run's validation images, recorded in its `preprocessing.json` so that predict, evaluate and
the registered model apply the model's own choice (`builders.postprocessing`).

The validation images are predicted whole, at full resolution, with the run's `predict` settings (tiles,
overlap, TTA), and each of `predict.watershed.candidates` is scored on them with
`unetlab.postprocess.choose`: a choice made on images the network did not train on, not on the images
of the final test.
"""

from __future__ import annotations

import logging

import mlflow
import numpy as np

from unetlab import challenge, postprocess
from unetlab.data import Splits
from unetlab.data.image_files import read_array
from unetlab.inference import predict_image

from . import builders, tracking
from .schema import Config

log = logging.getLogger(__name__)

RAND_ERROR = "postprocess_val_rand_error"  # metric: the chosen postprocessing's Rand error on validation
UNCUT_RAND_ERROR = "postprocess_val_rand_error_uncut"  # metric: the map's own, as predicted
TAG = "postprocessing"  # run tag: the choice, in words


def applies(config: Config, splits: Splits) -> bool:
    """Whether training chooses a postprocessing: `predict.postprocess=auto`, a binary cell/membrane model
    (`builders.challenge_applies`) and validation images at full resolution (folder data)."""
    return (config.predict.postprocess.value == "auto" and bool(splits.val_pairs)
            and builders.challenge_applies(config, splits.preprocessing.num_classes))


def choose_on_validation(config: Config, model, splits: Splits) -> postprocess.Choice:
    """The choice among `predict.watershed.candidates` on the validation images of `splits`, as `model`
    (open to any input size) predicts them; logged, with the table of every candidate at debug level."""
    labels, cell_maps, names = [], [], []
    for image_path, mask_path in splits.val_pairs:
        probabilities = predict_image(model, read_array(image_path), splits.preprocessing,
                                      **builders.prediction_settings(config))
        labels.append(builders.read_classes(mask_path, splits.preprocessing.num_classes, config.data) == 0)
        cell_maps.append(challenge.cell_probability(probabilities).astype(np.float32))
        names.append(str(mask_path))
    watersheds = postprocess.candidates(**builders.arguments(config.predict.watershed.candidates))
    grid = challenge.thresholds(*config.evaluate.thresholds, key="evaluate.thresholds")
    choice = postprocess.choose(labels, cell_maps, watersheds, grid, names)
    for watershed, error in choice.trials:
        log.debug("%s: Rand error %.4f", watershed, error)
    log.info("predict.postprocess=auto: %s on %d validation image(s) of %d candidates: Rand error %.4f (uncut %.4f)",
             choice.watershed or "no cut", len(labels), len(watersheds), choice.rand_error, choice.uncut_rand_error)
    return choice


def record(config: Config, model, splits: Splits, preprocessing_path) -> postprocess.Choice:
    """Choose on the validation images and record the choice: in `preprocessing.json` beside the checkpoints
    (and its artifact, when checkpoints are logged), its Rand errors as metrics and the choice as a tag."""
    from unetlab.models import with_any_input_size

    choice = choose_on_validation(config, with_any_input_size(model), splits)
    splits.preprocessing.postprocess = choice.as_dict()
    splits.preprocessing.save(preprocessing_path)
    if config.tracking.log_checkpoints:
        mlflow.log_artifact(str(preprocessing_path), tracking.CHECKPOINTS)
    tracking.retry_locked(mlflow.log_metrics, {RAND_ERROR: choice.rand_error, UNCUT_RAND_ERROR: choice.uncut_rand_error})
    tracking.retry_locked(mlflow.set_tag, TAG, str(choice.watershed or "none"))
    return choice
