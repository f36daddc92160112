"""`task=train`: build data, model and optimizer from the config, fit, track in MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import mlflow
import tensorflow as tf

from unetlab.callbacks import Checkpoints
from unetlab.models import describe
from unetlab.preprocessing import Preprocessing

from .. import builders, pictures, tracking
from ..schema import Config
from ..sweeps.trial import job_trial

log = logging.getLogger(__name__)


def train(config: Config) -> float:
    """Train one model and return the best value of `trainer.monitor` (the sweep objective)."""
    trial = job_trial(config)  # the Optuna trial this job runs (a no-op outside a search)
    trainer, output_dir = config.trainer, Path(config.output_dir)
    keras.utils.set_random_seed(config.seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_dtype_policy(trainer.precision.value)

    fingerprint = builders.checked_fingerprint(config)  # refuses broken folder data before anything is tracked
    splits = builders.make_splits(config)
    log.info("data: %s", splits.description)
    model = builders.build_model(config)
    log.info("%s", describe(model, config.model.depth, config.model.filters))
    label_size = builders.label_size(model, config)
    train_batches = builders.make_training_batches(config, splits, trainer.batch_size, label_size=label_size,
                                                   repeat=trainer.steps_per_epoch is not None)
    val_batches = builders.make_validation_batches(config, splits, trainer.batch_size, label_size=label_size)
    steps_per_epoch = builders.steps_per_epoch(config, splits)
    builders.compile_model(model, config, total_steps=trainer.epochs * steps_per_epoch)

    checkpoints = Checkpoints(output_dir / tracking.CHECKPOINTS, trainer.monitor, config.monitor_direction())
    # Beside the checkpoints from the start, so even an interrupted run's best.keras is usable.
    preprocessing_path = splits.preprocessing.save(checkpoints.directory / Preprocessing.FILENAME)
    callbacks = builders.training_callbacks(config, checkpoints) + trial.callbacks(trainer.monitor)
    tags = {"task": "train", **trial.tags(), **({"data_fingerprint": fingerprint} if fingerprint else {})}

    with tracking.tracked_run(config.tracking, tags) as run:
        trial.started(run.info.run_id)
        tracking.log_config(config)
        tracking.log_data(splits, fingerprint, getattr(config.data, "images", None))
        tracking.log_model_summary(model)
        model.fit(train_batches, validation_data=val_batches, epochs=trainer.epochs,
                  steps_per_epoch=steps_per_epoch if trainer.steps_per_epoch else None,
                  shuffle=False,  # the pipeline shuffles (seeded); Keras cannot shuffle a tf.data.Dataset
                  callbacks=callbacks, verbose=trainer.verbose if trainer.verbose == "auto" else int(trainer.verbose))
        if checkpoints.best is None:
            raise RuntimeError(f"trainer.monitor={trainer.monitor!r} was never reported (or was NaN every epoch)")
        tracking.retry_locked(mlflow.log_metrics, {f"best_{trainer.monitor}": checkpoints.best,
                                                   "best_epoch": checkpoints.best_epoch})
        if config.tracking.log_checkpoints:
            for path in (checkpoints.best_path, checkpoints.last_path, preprocessing_path):
                mlflow.log_artifact(str(path), tracking.CHECKPOINTS)
        if config.tracking.register_model:
            from ..serving import log_segmentation_model

            log_segmentation_model(checkpoints.best_path, preprocessing_path, config.tracking.register_model)
        if builders.is_augmented(config):
            mlflow.log_artifact(str(pictures.save_augmentation_grid(
                train_batches.unbatch(), config.tracking.num_predictions, output_dir)))
        if config.tracking.log_predictions:
            mlflow.log_artifact(str(pictures.save_prediction_grid(
                keras.saving.load_model(checkpoints.best_path), val_batches, config.tracking.num_predictions,
                output_dir)))
        trial.finished(checkpoints.best)  # last: a trial is complete once everything is logged
        log.info("best %s=%.4f at epoch %d; run %s", trainer.monitor, checkpoints.best, checkpoints.best_epoch + 1,
                 run.info.run_id)
        log.info("view: %s", tracking.runs_link(mlflow.get_tracking_uri(), run.info.experiment_id, run.info.run_id))
    return checkpoints.best
