"""`task=train`: build data, model and optimizer from the config, fit, track in MLflow;
`resume=RUN_ID` continues a run from its training state."""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path

import keras
import mlflow
import tensorflow as tf

from unetlab.callbacks import TimeLimit
from unetlab.checkpoints import Checkpoints, TrainingState
from unetlab.distribution import Replication
from unetlab.errors import ClusterError, ConfigError, DataError
from unetlab.planning.probe import read_peak
from unetlab.finetune import encoder_frozen, phases, set_encoder_trainable
from unetlab.precision import resolve as resolve_precision
from unetlab.preprocessing import Preprocessing

from .. import builders, case_postprocess, decision_fit, guards, pictures, postprocess_choice, tracking
from ..logged_run import fetch_training_state
from ..schema import Config
from ..sweeps.trial import job_trial

log = logging.getLogger(__name__)

REPLICAS = "replicas"  # param: the number of model replicas a run trained on
PRECISION = "precision"  # param: the dtype policy it trained under (trainer.precision=auto resolved)


def train(config: Config) -> float | None:
    """Train one model and return the best value of `trainer.monitor` (the sweep objective).
    Under `trainer.distribution=data_parallel` in a TF_CONFIG cluster every worker runs this;
    only the chief tracks the run and keeps checkpoints."""
    trainer = config.trainer
    # Nothing before `builders.replication` may start TensorFlow's runtime: MultiWorkerMirroredStrategy
    # configures collective ops at program start (seeding, determinism and the dtype policy do not start it).
    keras.utils.set_random_seed(config.seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy, why = resolve_precision(trainer.precision.value)
    keras.mixed_precision.set_dtype_policy(policy)
    if trainer.precision.value == "auto":
        log.info("precision %s (%s)", policy, why)

    fingerprint, image_digests = builders.checked_data(config)  # refuses broken folder data before anything is tracked
    replication = builders.replication(config)
    if replication.replicas > 1:
        log.info("data parallel: %s; global batch %d = trainer.batch_size %d x %d replicas", replication.description,
                 replication.global_batch(trainer.batch_size), trainer.batch_size, replication.replicas)
    elif trainer.distribution.value == "data_parallel":
        log.warning("trainer.distribution=data_parallel on %s: one replica trains", replication.description)
    if config.resume:  # before the model is built: the refusal costs nothing
        tracking.use_experiment(config.tracking)
        check_same_replicas(config.resume, replication)
    if replication.is_chief:
        return train_replicas(config, replication, Path(config.output_dir) / tracking.CHECKPOINTS,
                              fingerprint, image_digests)
    # Another worker of a cluster runs the chief's callbacks too, checkpoints included (a collective
    # op, as reading a synced variable, needs every worker), into a folder it deletes.
    with tempfile.TemporaryDirectory(prefix="unetlab-worker-") as scratch:
        return train_replicas(config, replication, Path(scratch), fingerprint, image_digests)


def train_replicas(config: Config, replication: Replication, checkpoint_dir: Path, fingerprint: str | None,
                   image_digests: dict) -> float | None:
    """Build, fit and (on the chief) track the model, spread as `replication` says."""
    trial = job_trial(config)  # the Optuna trial this job runs (a no-op outside a search)
    trainer = config.trainer
    batch_size = replication.global_batch(trainer.batch_size)
    splits = builders.make_splits(config)
    log.info("data: %s", splits.description)
    steps_per_epoch = builders.steps_per_epoch(config, splits, batch_size)
    checkpoints = Checkpoints(checkpoint_dir, trainer.monitor, config.monitor_direction(),
                              every=trainer.checkpoint_every)
    frozen_epochs = config.model.frozen_encoder_epochs()
    with replication.scope():
        model = builders.build_model(config, splits.input_shape)
        log.info("%s", builders.describe_model(model, config))
        state = fetch_training_state(config.resume, checkpoints.directory) if config.resume else None
        checkpoints.schedule_steps = schedule_steps(state, trainer.epochs * steps_per_epoch)
        if (state.epoch if state is not None else 0) < frozen_epochs:  # compiled as the state's epoch trained
            set_encoder_trainable(model, False)
        builders.compile_model(model, config, total_steps=checkpoints.schedule_steps)
        first_epoch, logged_epochs = 0, frozenset()
        if config.resume:
            if state is not None:
                try:
                    checkpoints.resume_from(model, state)
                except ValueError as error:  # saved by another version of the model code
                    raise DataError(f"resume={config.resume}: {error}") from None
                first_epoch = state.epoch + 1
            if first_epoch >= trainer.epochs and tracking.run_status(config.resume) == "FINISHED":
                log.info("run %s is FINISHED after %d epochs: nothing to do (trainer.epochs=N with N > %d trains "
                         "it longer)", config.resume, first_epoch, first_epoch)
                return checkpoints.best
            logged_epochs = tracking.logged_epochs(config.resume, "loss")
            log.info("resuming run %s at epoch %d of %d", config.resume, first_epoch + 1, trainer.epochs)
    # Beside the checkpoints from the start, so even an interrupted run's best.keras is usable.
    preprocessing_path = splits.preprocessing.save(checkpoints.directory / Preprocessing.FILENAME)
    label_size = builders.label_size(model)
    train_batches = builders.make_training_batches(config, splits, batch_size, label_size=label_size,
                                                   first_epoch=first_epoch, full_batches=replication.replicas > 1)
    val_batches = builders.make_validation_batches(config, splits, batch_size, label_size=label_size,
                                                   replicas=replication.replicas)
    callbacks = builders.training_callbacks(config, checkpoints, logged_epochs, extra=trial.callbacks(trainer.monitor),
                                            tracked=replication.is_chief)

    def fit() -> None:
        try:
            for start, end, frozen in phases(first_epoch, trainer.epochs, frozen_epochs):
                batches = train_batches if start == first_epoch else builders.make_training_batches(
                    config, splits, batch_size, label_size=label_size, first_epoch=start,
                    full_batches=replication.replicas > 1)
                if frozen:
                    epochs = f"epoch {end}" if start + 1 == end else f"epochs {start + 1}-{end}"
                    log.info("the encoder is frozen for %s (model.freeze_encoder_epochs=%d)", epochs, frozen_epochs)
                elif encoder_frozen(model):
                    with replication.scope():
                        builders.unfreeze_encoder(model, config, checkpoints.schedule_steps)
                    log.info("epoch %d on: the encoder trains too (at %g x the learning rate)", start + 1,
                             trainer.encoder_lr_scale)
                with replication.scope():
                    model.fit(replication.distribute(batches), epochs=end, initial_epoch=start,
                              validation_data=replication.distribute(val_batches), steps_per_epoch=steps_per_epoch,
                              validation_steps=trainer.validation_steps,
                              callbacks=callbacks, shuffle=False,  # the pipeline shuffles
                              verbose=builders.fit_verbosity(config))
                if model.stop_training:  # early stopping, the time limit or a NaN ended training
                    break
        except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError) as error:
            if replication.tasks == 1:
                raise
            raise ClusterError(f"another task of the TF_CONFIG cluster stopped (see its log): "
                               f"{type(error).__name__}; start every worker again, with resume=RUN_ID") from None
        finally:  # also on Ctrl-C, SIGTERM or an error: the last completed epoch's state is kept
            checkpoints.close()
        if checkpoints.best is None:
            raise RuntimeError(f"trainer.monitor={trainer.monitor!r} was never reported (or was NaN every epoch)")

    if not replication.is_chief:
        fit()
        return checkpoints.best

    tags = {"task": "train", tracking.CHECKPOINTS_DIR_TAG: str(checkpoints.directory.resolve()), **trial.tags(),
            **({"data_fingerprint": fingerprint} if fingerprint else {})}
    with tracking.tracked_run(config.tracking, tags, resume=config.resume, what=tracking.training_name(config)) as run:
        trial.started(run.info.run_id)
        tracking.log_config(config, params=not config.resume)
        if not config.resume:
            tracking.retry_locked(mlflow.log_params, {**tracking.backend_params(), REPLICAS: replication.replicas,
                                                      "global_batch_size": batch_size,
                                                      PRECISION: keras.mixed_precision.dtype_policy().name})
            tracking.log_data(splits, fingerprint, getattr(config.data, "images", None))
            if image_digests:  # evaluations find these images by content (guards.check_overlap)
                guards.log_image_digests(splits, image_digests)
            tracking.log_model_summary(model)
        if config.tracking.log_checkpoints:
            mlflow.log_artifact(str(preprocessing_path), tracking.CHECKPOINTS)
            checkpoints.on_written = tracking.artifact_uploader(run.info.run_id, tracking.CHECKPOINTS)
        fit()
        tracking.retry_locked(mlflow.log_metrics, {f"best_{trainer.monitor}": checkpoints.best,
                                                   "best_epoch": checkpoints.best_epoch,
                                                   "peak_memory_mb": read_peak() / 2**20})  # what a plan's budget bounds
        stopped = [c.stopped_epoch for c in callbacks if isinstance(c, TimeLimit) and c.stopped_epoch is not None]
        if stopped:  # trainer.time_limit ended it early: say so in the runs table
            tracking.retry_locked(mlflow.set_tag, "stopped_by_time_limit", f"after epoch {stopped[0] + 1}")
        trial.finished(checkpoints.best)  # the objective is recorded before the optional steps below
        one_device = val_batches.unbatch().batch(trainer.batch_size) if replication.replicas > 1 else val_batches
        finish_optional(config, checkpoints, preprocessing_path, splits, train_batches, one_device)
        store_checkpoints_once(config, checkpoints, run.info.run_id)
        log.info("best %s=%.4f at epoch %d; run %s", trainer.monitor, checkpoints.best, checkpoints.best_epoch + 1,
                 run.info.run_id)
        log.info("view: %s", tracking.runs_link(mlflow.get_tracking_uri(), run.info.experiment_id, run.info.run_id))
    return checkpoints.best


def schedule_steps(state: TrainingState | None, planned: int) -> int:
    """The steps the learning-rate schedule spans (`total_steps` of `builders.compile_model`): `planned`
    (trainer.epochs x steps per epoch) for a new run, and for a resumed one the span its training
    state recorded, whatever `trainer.epochs` says now. A run resumed with its own epochs follows its
    schedule step for step; one trained longer (`resume=RUN_ID trainer.epochs=N`) neither restarts
    nor stretches it: `cosine` decays to `trainer.min_lr` where it first would have, and the extra
    epochs train at `trainer.min_lr` (the learning rate never rises). A state saved before the span
    was recorded: `planned`, as then."""
    return state.schedule_steps if state is not None and state.schedule_steps else planned


def check_same_replicas(run_id: str, replication: Replication) -> None:
    """Refuse to resume a run on another number of replicas: its global batch, steps per epoch,
    schedule and data position would all change under it."""
    trained = int(tracking.run_param(run_id, REPLICAS) or 1)  # runs from before data parallelism: one
    if trained != replication.replicas:
        raise ConfigError(f"resume={run_id}: the run trained on {trained} replica(s) and this process has "
                          f"{replication.replicas} ({replication.description}); resume it on {trained} device(s) "
                          f"(trainer.distribution), or start a new run")


def store_checkpoints_once(config: Config, checkpoints: Checkpoints, run_id: str) -> None:
    """A finished run keeps one copy of its checkpoints: the best model and the newest training
    state (to resume or extend the run), in the run's artifacts when they are logged (the local
    copies go), else in the output folder. The older state slot only guarded against a kill mid-write."""
    stale = checkpoints.stale_state()
    if stale is not None:
        stale.unlink()
        if config.tracking.log_checkpoints:
            tracking.delete_artifact(run_id, f"{tracking.CHECKPOINTS}/{stale.name}")
    if config.tracking.log_checkpoints:
        for path in (checkpoints.best_path, *checkpoints.state_paths):
            path.unlink(missing_ok=True)
        log.info("checkpoints are stored once, in the run's artifacts (%s/)", tracking.CHECKPOINTS)


def finish_optional(config: Config, checkpoints: Checkpoints, preprocessing_path: Path, splits, train_batches,
                    val_batches) -> None:
    """The degenerate-model check, the decision layer (`decision`), the postprocessing choice
    (`predict.postprocess=auto`, on calibrated probabilities), registration and pictures: each that fails is a
    warning and a tag, not a failed training."""
    output_dir, count = Path(config.output_dir), config.tracking.num_predictions
    best_model = functools.cache(lambda: keras.saving.load_model(checkpoints.best_path))
    steps = [("degenerate_check", lambda: guards.check_predictions(best_model(), val_batches))]
    if decision_fit.applies(config, splits):  # before the postprocessing choice and registration: both use it
        steps.append(("decision_layer", lambda: decision_fit.record(config, best_model(), splits, val_batches,
                                                                   preprocessing_path, output_dir)))
    if case_postprocess.applies(config, splits):  # before registration: the run's preprocessing.json holds the rules
        steps.append(("case_postprocessing", lambda: case_postprocess.record(config, best_model(), splits,
                                                                            preprocessing_path)))
    if postprocess_choice.applies(config, splits):  # before registration: the registered model carries the choice
        steps.append(("postprocess_choice", lambda: postprocess_choice.record(config, best_model(), splits,
                                                                             preprocessing_path)))
    if config.tracking.register_model:
        from ..serving import log_segmentation_model

        steps.append(("register_model", lambda: log_segmentation_model(
            checkpoints.best_path, preprocessing_path, config.tracking.register_model)))
    if builders.weight_maps(config) is not None:
        steps.append(("weight_map", lambda: mlflow.log_artifact(str(pictures.save_weight_map(
            builders.weight_map_sample(config, splits), output_dir)))))
    if builders.is_augmented(config):
        steps.append(("augmentation_grid", lambda: mlflow.log_artifact(str(pictures.save_augmentation_grid(
            train_batches.unbatch(), count, output_dir)))))
    if config.tracking.log_predictions:
        steps.append(("prediction_grid", lambda: mlflow.log_artifact(str(pictures.save_prediction_grid(
            best_model(), val_batches, count, output_dir)))))
    failed = []
    for name, step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - optional: the training itself is done and recorded
            log.warning("%s failed (the training is kept): %s: %s", name, type(error).__name__, error)
            failed.append(name)
    if failed:
        tracking.retry_locked(mlflow.set_tag, "failed_end_steps", ",".join(failed))
