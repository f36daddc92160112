"""`task=train`: build data, model and optimizer from the config, fit, track in MLflow."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from unetlab.errors import ConfigError

from ..schema import Config, monitor_mode
from ..settings import data_params, to_config, without
from .check_data import checked_fingerprint

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float:
    """Train one model and return the best value of `trainer.monitor` (the sweep objective)."""
    config = to_config(cfg)
    trial = search_trial(config)
    import keras
    import mlflow
    import tensorflow as tf

    from unetlab.callbacks import Checkpoints, EpochSummary
    from unetlab.data import SOURCES, make_batches
    from unetlab.data.augment import AugmentConfig
    from unetlab.models import describe

    from .. import tracking

    trainer, data = config.trainer, config.data
    keras.utils.set_random_seed(config.seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_dtype_policy(trainer.precision.value)

    data_fingerprint = checked_fingerprint(config) if data.name == "folder" else None
    splits = SOURCES[data.name](seed=config.seed, **data_params(config))
    log.info("data: %s", splits.description)
    try:
        model = build_model(config)
    except ValueError as error:  # e.g. an unknown model.kernel_initializer, reported by Keras
        raise ConfigError(f"model: {' '.join(str(error).split())}") from None
    log.info("%s", describe(model, config.model.depth, config.model.filters))

    input_size = config.input_size()
    label_size = model.output_shape[1] if model.output_shape[1] != input_size else None
    train_batches = make_training_batches(config, splits, trainer.batch_size, label_size=label_size,
                                          repeat=trainer.steps_per_epoch is not None)
    val_batches = make_batches(splits.val, trainer.batch_size, shuffle=False, seed=config.seed, cache=data.cache,
                               label_size=label_size)
    steps_per_epoch = trainer.steps_per_epoch or -(-splits.num_train // trainer.batch_size)
    compile_model(model, config, total_steps=trainer.epochs * steps_per_epoch, ignore_index=splits.ignore_index)

    mode = monitor_mode(trainer.monitor, trainer.monitor_mode)
    output_dir = Path(config.output_dir)
    checkpoints = Checkpoints(output_dir / "checkpoints", trainer.monitor, mode)
    # Beside the checkpoints from the start, so even an interrupted run's best.keras is usable.
    preprocessing_path = training_preprocessing(config, splits).save(checkpoints.directory / "preprocessing.json")
    callbacks = [checkpoints, EpochSummary(trainer.epochs, trainer.monitor, mode), tracking.MlflowMetrics(),
                 keras.callbacks.TerminateOnNaN()]
    if trainer.schedule.value == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(trainer.monitor, factor=trainer.plateau_factor,
                                                           patience=trainer.plateau_patience, mode=mode,
                                                           min_lr=trainer.min_lr))
    if trainer.early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(trainer.monitor, patience=trainer.early_stopping_patience,
                                                       mode=mode))

    tags = {"task": "train", "overrides": " ".join(command_line_overrides()), **tracking.git_commit()}
    if data_fingerprint:
        tags["data_fingerprint"] = data_fingerprint
    if trial is not None:
        from ..pruning import TrialPruning

        pruning = TrialPruning(trial, trainer.monitor)
        callbacks.append(pruning)
        tags.update({"optuna.study": trial.study.study_name, "optuna.trial": str(trial.number)})
    with tracking.tracked_run(config.tracking, tags) as run:
        if trial is not None:
            from ..search import MLFLOW_RUN_ID

            tracking.retry_locked(trial.set_user_attr, MLFLOW_RUN_ID, run.info.run_id)
        tracking.retry_locked(mlflow.log_params, tracking.config_params(cfg))
        log_data(splits, data_fingerprint, config)
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        mlflow.log_text(model_summary(model), "model_summary.txt")
        tracking.retry_locked(mlflow.log_metric, "params", model.count_params())
        model.fit(train_batches, validation_data=val_batches, epochs=trainer.epochs,
                  steps_per_epoch=steps_per_epoch if trainer.steps_per_epoch else None,
                  shuffle=False,  # the pipeline shuffles (seeded); Keras cannot shuffle a tf.data.Dataset
                  callbacks=callbacks, verbose=trainer.verbose if trainer.verbose == "auto" else int(trainer.verbose))
        if checkpoints.best is None:
            raise RuntimeError(f"trainer.monitor={trainer.monitor!r} was never reported (or was NaN every epoch)")
        tracking.retry_locked(mlflow.log_metrics, {f"best_{trainer.monitor}": checkpoints.best,
                                                   "best_epoch": checkpoints.best_epoch})
        if trial is not None and pruning.pruned_epoch is not None:
            from ..search import PRUNED_AT_EPOCH

            tracking.retry_locked(mlflow.set_tag, "pruned", "true")
            tracking.retry_locked(mlflow.log_metric, PRUNED_AT_EPOCH, pruning.pruned_epoch)
        if config.tracking.log_checkpoints:
            for path in (checkpoints.best_path, checkpoints.last_path, preprocessing_path):
                mlflow.log_artifact(str(path), "checkpoints")
        if config.tracking.register_model:
            from ..serving import log_segmentation_model

            log_segmentation_model(checkpoints.best_path, preprocessing_path, config.tracking.register_model)
        if config.augment.transforms() != AugmentConfig() or splits.patch_size:
            log_augmentation_grid(train_batches.unbatch(), config.tracking.num_predictions, output_dir)
        if config.tracking.log_predictions:
            log_prediction_grid(keras.saving.load_model(checkpoints.best_path), val_batches,
                                config.tracking.num_predictions, output_dir)
        if trial is not None:  # the sweeper reads it when a launcher loses the job's return value
            from ..search import OBJECTIVE

            tracking.retry_locked(trial.set_user_attr, OBJECTIVE, checkpoints.best)
        log.info("best %s=%.4f at epoch %d; run %s", trainer.monitor, checkpoints.best, checkpoints.best_epoch + 1,
                 run.info.run_id)
        log.info("view: %s", tracking.runs_link(mlflow.get_tracking_uri(), run.info.experiment_id, run.info.run_id))
    return checkpoints.best


def search_trial(config: Config):
    """The Optuna trial this job runs, when it is one of an `hparams_search` sweep."""
    if config.hparams_search is None:
        return None
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ..search import job_trial

    if config.hparams_search.trial_id is None and HydraConfig.initialized() and \
            HydraConfig.get().mode != RunMode.MULTIRUN:
        raise ConfigError("hparams_search=optuna is a search over many runs: add -m "
                          "(python -m runner -m hparams_search=optuna)")
    return job_trial(config.hparams_search)


def make_training_batches(config: Config, splits, batch_size: int, *, label_size: int | None = None,
                          repeat: bool = False):
    """What the model trains on: cached pairs, shuffled, patched and augmented as configured, batched."""
    from unetlab.data import make_batches
    from unetlab.data.augment import make_augmenter

    return make_batches(splits.train, batch_size, shuffle=True, seed=config.seed, cache=config.data.cache,
                        label_size=label_size, repeat=repeat,
                        augment=make_augmenter(config.augment.transforms(), config.seed),
                        patch_size=splits.patch_size, foreground_oversample=splits.foreground_oversample,
                        ignore_index=splits.ignore_index)


def build_model(config: Config):
    """The model named by `model.name`, sized by the data config."""
    from unetlab.models import MODELS

    model = config.model
    data = config.data
    size = config.input_size()
    return MODELS[model.name](
        (size, size, data.channels), data.num_classes, depth=model.depth,
        filters=model.filters, batch_norm=model.batch_norm, dropout=model.dropout, pooling=model.pooling.value,
        upsampling=model.upsampling.value, padding=model.padding.value,
        kernel_initializer=model.kernel_initializer,
    )


def training_preprocessing(config: Config, splits):
    """What prediction must do to an image to feed it as training did (saved beside the checkpoints)."""
    from unetlab.preprocessing import Preprocessing

    data = config.data
    resized = data.name == "folder" and not splits.patch_size  # whole folder images resized to image_size
    normalize = data.normalize.value if data.name == "folder" else "scale"
    return Preprocessing(channels=data.channels, num_classes=data.num_classes, normalize=normalize,
                         mean=splits.mean, std=splits.std, tile_size=config.input_size(),
                         resize=data.image_size if resized else None)


def log_data(splits, data_fingerprint: str | None, config: Config) -> None:
    """The split (file names per side), dataset statistics and fingerprint, as artifacts and an MLflow input."""
    import mlflow

    if splits.train_files:
        mlflow.log_dict({"train": splits.train_files, "val": splits.val_files}, "data/split.json")
    if splits.mean is not None:
        mlflow.log_dict({"mean": splits.mean, "std": splits.std}, "data/statistics.json")
    if data_fingerprint:
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        source = resolve_dataset_source(str(Path(config.data.images).resolve()))
        dataset = MetaDataset(source=source, name=Path(config.data.images).name, digest=data_fingerprint)
        from ..tracking import retry_locked

        retry_locked(mlflow.log_input, dataset, context="training")


def compile_model(model, config: Config, total_steps: int, ignore_index: int | None = None) -> None:
    """Compile with the configured optimizer (and schedule), loss and metrics."""
    from unetlab.losses import build_loss
    from unetlab.metrics import build_metrics
    from unetlab.optim import build_optimizer

    trainer = config.trainer
    optimizer = build_optimizer(config.optimizer.name, config.optimizer.lr, schedule=trainer.schedule.value,
                                total_steps=total_steps, min_lr=trainer.min_lr,
                                **without(config.optimizer, "name", "lr"))
    model.compile(optimizer=optimizer,
                  loss=build_loss(config.loss.name, ignore_index=ignore_index, **without(config.loss, "name")),
                  metrics=build_metrics(config.data.num_classes, ignore_index=ignore_index),
                  jit_compile="auto" if trainer.jit_compile is None else trainer.jit_compile,
                  run_eagerly=trainer.run_eagerly)


def model_summary(model) -> str:
    buffer = io.StringIO()
    model.summary(print_fn=lambda line, **_: buffer.write(line + "\n"), line_length=120)
    return buffer.getvalue()


def log_prediction_grid(model, batches, count: int, output_dir: Path) -> None:
    """Log image | truth | prediction for the first `count` validation samples as predictions.png."""
    import mlflow
    import numpy as np

    from unetlab.visualize import prediction_grid, save_png

    images, masks = [], []
    for image_batch, mask_batch in batches:
        images.append(image_batch.numpy())
        masks.append(mask_batch.numpy())
        if sum(len(b) for b in images) >= count:
            break
    images, masks = np.concatenate(images)[:count], np.concatenate(masks)[:count]
    probabilities = model.predict(images, verbose=0)
    path = save_png(prediction_grid(images, masks, probabilities), output_dir / "predictions.png")
    mlflow.log_artifact(str(path))


def log_augmentation_grid(pairs, count: int, output_dir: Path) -> None:
    """Log what the model sees: augmented image | mask pairs as augmentations.png."""
    import mlflow

    mlflow.log_artifact(str(save_augmentation_grid(pairs, count, output_dir)))


def save_augmentation_grid(pairs, count: int, output_dir: Path) -> Path:
    """Write the first `count` (image, mask) pairs as augmentations.png (image | mask per row)."""
    from unetlab.visualize import pair_grid, save_png

    output_dir.mkdir(parents=True, exist_ok=True)
    images, masks = zip(*[(image.numpy(), mask.numpy()) for image, mask in pairs.take(count)])
    return save_png(pair_grid(images, masks), output_dir / "augmentations.png")


def command_line_overrides() -> list[str]:
    """The overrides given on the command line (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)
