"""The steps tasks share, each built from the typed `Config`: data, model, compiled training
setup, batches, callbacks and prediction settings. Tasks, benchmarks and tests import them
from here; the library (`unetlab`) does the work, and its errors get the config key added.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from unetlab.errors import ConfigError

from .schema import BorderWeightedLossConfig, Config, FolderDataConfig, NNUNetDataConfig
from .settings import config_group, plain


def arguments(settings: Any, *leave_out: str) -> dict[str, Any]:
    """A config group as keyword arguments of the library function it feeds (config keys are
    the argument names), less its `name` and `leave_out`."""
    return {key: value for key, value in plain(settings).items() if key not in ("name", *leave_out)}


# ---------------------------------------------------------------- data
def folder_reports(config: Config, cache_dir: Path | None = None) -> list:
    """Integrity reports of data.images/data.masks and, when given, data.val_images/data.val_masks;
    a passed check of the same files and settings is read from `cache_dir` (None: checked afresh)."""
    from functools import partial

    from unetlab.data.check_cache import checked_folders
    from unetlab.data.checks import message_names

    check_folders = partial(checked_folders, cache_dir=cache_dir)

    data = config.data
    common = dict(channels=data.channels, num_classes=data.num_classes, ignore_index=data.ignore_index,
                  palette=data.palette)
    keys = {name: f"data.{name}" for name in message_names(None)}  # the data group's keys are the argument names
    with config_group("data"):
        reports = [check_folders(data.images, data.masks, names=keys, **common)]
        if data.val_images is not None:
            reports.append(check_folders(data.val_images, data.val_masks, **common, names={
                **keys, "images": "data.val_images", "masks": "data.val_masks"}))
    return reports


def checked_data(config: Config) -> tuple[str | None, dict[str, dict[str, str]]]:
    """Refuse a broken folder dataset (DataError naming the files) and return its content
    fingerprint and the sha256 of each image by side ({"train": {file name: digest}, "val": ...}:
    validation folders have their own, a split shares one); (None, {}) for generated data.
    The check hashed every file; its digests are reused. A check that passed before on the same
    files and settings (every sweep trial, every worker) is read from the cache
    (`unetlab.data.check_cache`) instead of decoding the dataset again."""
    from unetlab.data.check_cache import default_cache_dir
    from unetlab.data.checks import raise_if_broken

    if not isinstance(config.data, FolderDataConfig):
        return None, {}
    summaries = [raise_if_broken(report, more_help="run task=check_data for the full list").summary
                 for report in folder_reports(config, default_cache_dir())]
    digests = {"train": summaries[0]["image_digests"], "val": summaries[-1]["image_digests"]}
    if len(summaries) == 1:
        return summaries[0]["fingerprint"], digests
    joined = " ".join(summary["fingerprint"] for summary in summaries)  # training + validation folders
    return hashlib.sha256(joined.encode()).hexdigest()[:16], digests


def make_splits(config: Config):
    """The data source named by `data.name`: training and validation pairs, and their preprocessing."""
    from unetlab.data import SOURCES

    with config_group("data"):
        if isinstance(config.data, NNUNetDataConfig):  # the dataset's own channels and classes; a planned patch
            return SOURCES["nnunet"](seed=config.seed, multiple=config.model.size_multiple(config.data.spatial_dims()),
                                     cache_dir=volume_cache_dir(), **arguments(config.data, "cache", "objects",
                                                                               "channels", "num_classes"))
        return SOURCES[config.data.name](seed=config.seed, **arguments(config.data, "cache", "root", "objects"))


def volume_cache_dir() -> Path:
    """Where preprocessed volumes go: `volumes/` beside the data checks' cache (`$UNETLAB_CACHE_DIR`, ...), else
    a folder in the system's temporary directory."""
    import tempfile

    from unetlab.data.check_cache import default_cache_dir

    checks = default_cache_dir()
    return (checks.parent if checks else Path(tempfile.gettempdir()) / "unetlab") / "volumes"


def augment_settings(config: Config):
    """The library's AugmentConfig for `augment` (it validates the values)."""
    from unetlab.data.augment import AugmentConfig

    with config_group("augment"):
        return AugmentConfig(**arguments(config.augment))


def make_training_batches(config: Config, splits, batch_size: int, *, label_size: int | None = None,
                          first_epoch: int = 0, full_batches: bool = False):
    """What the model trains on: an endless stream of epochs of cached pairs, shuffled, patched and
    augmented as configured, batched; from `first_epoch` on (a resumed run sees what it would have).
    `full_batches` (data parallel): batches run on across passes, so every one splits evenly."""
    from unetlab.data import make_batches
    from unetlab.data.augment import make_augmenter

    data = config.data
    if splits.train_batches is not None:  # a planned patch stream (data=nnunet): batch `step` from first_epoch's
        first_step = first_epoch * steps_per_epoch(config, splits, batch_size)
        return augmented_stream(splits.train_batches(batch_size, first_step), batch_size, first_step, config)
    patches = dict(patch_size=data.patch_size,
                   foreground_oversample=data.foreground_oversample) if isinstance(data, FolderDataConfig) else {}
    repeat = config.trainer.steps_per_epoch is not None or full_batches
    pairs_per_epoch = steps_per_epoch(config, splits, batch_size) * batch_size if repeat else splits.num_train
    return make_batches(splits.train, batch_size, shuffle=True, seed=config.seed, cache=data.cache,
                        label_size=label_size, repeat=repeat, skip=first_epoch * pairs_per_epoch,
                        augment=make_augmenter(augment_settings(config), config.seed, keyed=True),
                        ignore_index=getattr(data, "ignore_index", None), weights=weight_maps(config), **patches)


def augmented_stream(batches, batch_size: int, first_step: int, config: Config):
    """A stream of batches with each pair augmented as `augment` says, keyed by its place in the stream (step
    x batch_size + position), so a resumed run augments as an uninterrupted one; unchanged without augment."""
    import tensorflow as tf

    from unetlab.data.augment import AugmentConfig, make_augmenter

    settings = augment_settings(config)
    if settings == AugmentConfig():
        return batches
    augment = make_augmenter(settings, config.seed, keyed=True)
    keys = tf.data.Dataset.range(first_step * batch_size, sys.maxsize)
    pairs = tf.data.Dataset.zip((keys, batches.unbatch())).apply(augment)
    return pairs.map(lambda key, pair: pair).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def make_validation_batches(config: Config, splits, batch_size: int, *, label_size: int | None = None,
                            replicas: int = 1):
    """The validation pairs in a fixed order, batched (with weight maps when the loss takes them,
    so val_loss is the training loss); each batch splits evenly over `replicas`."""
    from unetlab.data import make_batches
    from unetlab.data.pipeline import UnevenBatches

    try:
        return make_batches(splits.val, batch_size, shuffle=False, seed=config.seed, cache=config.data.cache,
                            label_size=label_size, ignore_index=getattr(config.data, "ignore_index", None),
                            weights=weight_maps(config), multiple_of=replicas)
    except UnevenBatches as error:
        raise ConfigError(f"trainer.distribution={config.trainer.distribution.value}: the validation {error}; "
                          f"make the number of validation images (or tiles) a multiple of {replicas}") from None


def weight_maps(config: Config):
    """The border weight maps (`unetlab.data.weights.BorderWeights`) of a pixel-weighted loss
    (`loss=weighted_*`), else None."""
    from unetlab.data.weights import BorderWeights

    if not isinstance(config.loss, BorderWeightedLossConfig):
        return None
    with config_group("loss"):
        return BorderWeights(objects=config.data.objects.value, **arguments(config.loss, "smooth"))


def weight_map_sample(config: Config, splits):
    """The first training pair as stored (whole, not augmented) with its weight map: (image, mask, weights)."""
    from unetlab.data import make_batches

    return make_batches(splits.train.take(1), 1, shuffle=False, seed=config.seed, cache=False,
                        ignore_index=getattr(config.data, "ignore_index", None), weights=weight_maps(config)).unbatch()


def is_augmented(config: Config) -> bool:
    """Whether training sees other pairs than the stored ones (augmentation or random patches)."""
    from unetlab.data.augment import AugmentConfig

    return augment_settings(config) != AugmentConfig() or bool(getattr(config.data, "patch_size", None))


# ---------------------------------------------------------------- model and training
def build_model(config: Config, input_shape: tuple[int, ...] | None = None):
    """The model named by `model.name`, for `input_shape` (a source's planned one), else the data config's."""
    from unetlab.models import MODELS

    try:
        with config_group("model"):
            return MODELS[config.model.name](input_shape or config.input_shape(), config.data.num_classes,
                                             **arguments(config.model, "freeze_encoder_epochs", "dims"))
    except ConfigError:
        raise
    except ValueError as error:  # e.g. an unknown model.kernel_initializer, reported by Keras
        raise ConfigError(f"model: {' '.join(str(error).split())}") from None


def describe_model(model, config: Config) -> str:
    """The line that says what was built ('Residual U-Net++ depth=4 filters=32: 9.0M params (...)')."""
    from unetlab.models import describe
    from unetlab.models.encoder_unet import describe_encoder_unet
    from unetlab.models.nnunet import describe_nnunet

    settings = config.model
    if settings.name == "encoder_unet":
        return describe_encoder_unet(model, settings.encoder, settings.encoder_weights, settings.freeze_encoder_epochs)
    if settings.name == "nnunet":
        return describe_nnunet(model, settings.strides, settings.filters, settings.max_filters)
    return describe(model, settings.depth, settings.filters, settings.block.value, settings.attention)


def label_size(model) -> int | None:
    """The mask size the model predicts when it differs from its input (valid padding), else None."""
    from unetlab.models import inference_model

    output = inference_model(model).output_shape[1]
    return output if output != model.input_shape[1] else None


def compile_model(model, config: Config, total_steps: int) -> None:
    """Compile with the configured optimizer (and schedule, and `trainer.encoder_lr_scale`), loss and metrics."""
    from unetlab.finetune import scale_encoder_learning_rate
    from unetlab.losses import build_loss
    from unetlab.metrics import build_metrics
    from unetlab.optim import build_optimizer

    trainer, ignore_index = config.trainer, getattr(config.data, "ignore_index", None)
    with config_group("optimizer"):
        optimizer = build_optimizer(config.optimizer.name, config.optimizer.lr, schedule=trainer.schedule.value,
                                    total_steps=total_steps, min_lr=trainer.min_lr,
                                    **arguments(config.optimizer, "lr"))
    optimizer = scale_encoder_learning_rate(optimizer, model, trainer.encoder_lr_scale)
    with config_group("loss"):
        loss = build_loss(config.loss.name, ignore_index=ignore_index, **arguments(config.loss))
    model.compile(optimizer=optimizer, loss=loss,
                  metrics=build_metrics(config.data.num_classes, ignore_index=ignore_index),
                  jit_compile="auto" if trainer.jit_compile is None else trainer.jit_compile,
                  run_eagerly=trainer.run_eagerly)


def unfreeze_encoder(model, config: Config, total_steps: int) -> None:
    """Train the frozen encoder from now on: compiled again, with a new optimizer over every variable that
    takes over the old one's step count, learning rate and decoder moments (`unetlab.finetune`)."""
    from unetlab.finetune import set_encoder_trainable, transfer_state

    previous = model.optimizer
    set_encoder_trainable(model, True)
    compile_model(model, config, total_steps)
    model.optimizer.build(model.trainable_variables)
    transfer_state(previous, model.optimizer)


def steps_per_epoch(config: Config, splits, batch_size: int | None = None) -> int:
    """`trainer.steps_per_epoch`, or one pass over the training pairs in batches of `batch_size`
    (default `trainer.batch_size`)."""
    return config.trainer.steps_per_epoch or -(-splits.num_train // (batch_size or config.trainer.batch_size))


def replication(config: Config):
    """How `trainer.distribution` spreads the training (`unetlab.distribution.Replication`)."""
    import keras

    from unetlab.distribution import data_parallel, single_device

    if config.trainer.distribution.value == "none":
        return single_device()
    try:
        return data_parallel(keras.backend.backend())
    except ValueError as error:  # a backend without data parallelism, an unreadable or unfit TF_CONFIG
        raise ConfigError(f"trainer.distribution=data_parallel: {error}") from None


def fit_verbosity(config: Config) -> int:
    """Keras `fit(verbose=)` for `trainer.verbose`. `auto`: the progress bar (1) on a terminal, else
    0: in a pipe or a file the bar's redraws fill the log, and the epoch summary line
    (`unetlab.callbacks.EpochSummary`, always on) already reports every epoch once."""
    if config.trainer.verbose != "auto":
        return int(config.trainer.verbose)
    return 1 if sys.stdout is not None and sys.stdout.isatty() else 0


def training_callbacks(config: Config, checkpoints, logged_epochs: frozenset = frozenset(),
                       extra: list = (), tracked: bool = True) -> list:
    """A summary line and (when `tracked`) MLflow metrics per epoch (but for `logged_epochs`), NaN guard, Ctrl-C
    and SIGTERM that stop between steps, the configured schedule on plateau, early stopping and time limit,
    all watching `trainer.monitor`, then `extra` (a trial's pruning), the checkpoints, which carry
    the others' counters, and last the stop on Ctrl-C and SIGTERM: a signal noted during an epoch's
    end (its logging) stops training only once that epoch's state is captured."""
    import keras

    from unetlab.callbacks import EpochSummary, InterruptBetweenSteps, TimeLimit

    from .tracking import MlflowMetrics

    trainer = config.trainer
    mode = config.monitor_direction()
    callbacks = [EpochSummary(trainer.epochs, trainer.monitor, mode),
                 *([MlflowMetrics(logged_epochs)] if tracked else []),
                 keras.callbacks.TerminateOnNaN()]
    interrupt = InterruptBetweenSteps()
    if trainer.schedule.value == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(trainer.monitor, factor=trainer.plateau_factor,
                                                           patience=trainer.plateau_patience, mode=mode,
                                                           min_lr=trainer.min_lr))
    if trainer.early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(trainer.monitor, patience=trainer.early_stopping_patience,
                                                       mode=mode))
    if trainer.time_limit is not None:
        callbacks.append(TimeLimit(trainer.time_limit))
    checkpoints.watch(callbacks + [checkpoints])
    return callbacks + list(extra) + [checkpoints, interrupt]


# ---------------------------------------------------------------- prediction
def prediction_settings(config: Config) -> dict[str, Any]:
    """Keyword arguments of `unetlab.inference.predict_image` from `predict` (tiles, overlap, TTA)."""
    return arguments(config.predict, "input", "output", "save_probabilities", "save_overlay", "format", "postprocess",
                     "watershed")


def case_prediction_settings(config: Config) -> dict[str, Any]:
    """Keyword arguments of `unetlab.volume_inference.predict_case` from `predict`: the sliding window's overlap
    and batch, mirroring with any `predict.tta`."""
    settings = config.predict
    return {"overlap": settings.overlap, "batch_size": settings.batch_size, "mirror": settings.tta.value != "none"}


def postprocessing(config: Config, preprocessing) -> Any:
    """The `unetlab.postprocess.Watershed` that `predict.postprocess` asks for, or None: none; watershed,
    `predict.watershed`'s; auto, the one the model's training chose on its validation images
    (`preprocessing.postprocess`: None where it chose no cut or recorded no choice)."""
    from unetlab.postprocess import Watershed, from_record

    choice = config.predict.postprocess.value
    if choice == "watershed":
        return Watershed(**arguments(config.predict.watershed, "candidates"))
    return from_record(preprocessing.postprocess) if choice == "auto" else None


def postprocessed(probabilities: np.ndarray, watershed) -> np.ndarray:
    """The probabilities (H, W, K) as predicted (`watershed` None), or a binary model's cells cut along the
    watershed's lines (`unetlab.postprocess.cut`)."""
    from unetlab.postprocess import cut

    try:
        return cut(probabilities, watershed)
    except ValueError as error:
        raise ConfigError(f"predict.postprocess: {error}: use predict.postprocess=none") from None


def describe_postprocessing(config: Config, watershed) -> str:
    """What `postprocessing` gave, for the log: 'none', 'watershed threshold=0.5 h=6 sigma=1', with
    ' (chosen on the training run's validation images)' under predict.postprocess=auto."""
    chosen = " (chosen on the training run's validation images)" if config.predict.postprocess.value == "auto" else ""
    return f"{watershed or 'none'}{chosen}"


def challenge_applies(config: Config, num_classes: int) -> bool:
    """Whether the ISBI 2012 challenge's scores apply: a binary model whose objects are the cells between
    membranes (data.objects=background: class 0 the cells, class 1 the membranes), no ignored pixels."""
    return num_classes <= 2 and config.data.objects.value == "background" and config.data.ignore_index is None


def read_classes(path: str, num_classes: int, data) -> np.ndarray:
    """A mask file as class ids (H, W), decoded exactly as for training (data.palette, data.ignore_index,
    data.invert_masks); a broken mask is a one-line DataError naming the file."""
    from unetlab.data.decode import read_class_ids

    return read_class_ids(path, num_classes, ignore_index=data.ignore_index, palette=data.palette,
                          invert_masks=data.invert_masks)
