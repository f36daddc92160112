"""Typed schema of the composed config: types here, values in `conf/*.yaml`.

Every group option has a dataclass; `register_configs()` stores them in Hydra's
ConfigStore, and each YAML option lists its schema first in its defaults list
(`- /schema/<group>/<option>@_here_`).
A typo (`model.filtres=64`) or a wrong type (`model.filters=abc`) then fails at
composition. Rules that tie several keys together live in `Config.__post_init__`
and run when the runner converts the config to objects (`OmegaConf.to_object`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from unetlab.errors import ConfigError
from unetlab.geometry import unet_output_size


class Task(Enum):
    train = "train"
    evaluate = "evaluate"
    predict = "predict"
    export = "export"
    check_data = "check_data"
    preview = "preview"


class Normalize(Enum):
    scale = "scale"
    minmax = "minmax"
    zscore = "zscore"
    dataset = "dataset"


class TestTimeAugmentation(Enum):
    none = "none"
    flips = "flips"
    d4 = "d4"


class ExportFormat(Enum):
    mlflow = "mlflow"
    saved_model = "saved_model"


class Pooling(Enum):
    max = "max"
    conv = "conv"


class Upsampling(Enum):
    nearest = "nearest"
    transpose = "transpose"


class Padding(Enum):
    same = "same"
    valid = "valid"


class Schedule(Enum):
    constant = "constant"
    cosine = "cosine"
    plateau = "plateau"


class MonitorMode(Enum):
    auto = "auto"
    min = "min"
    max = "max"


class Sampler(Enum):
    tpe = "tpe"
    random = "random"


class Pruner(Enum):
    none = "none"
    median = "median"
    percentile = "percentile"
    hyperband = "hyperband"
    threshold = "threshold"


class Precision(Enum):
    float32 = "float32"
    mixed_float16 = "mixed_float16"
    mixed_bfloat16 = "mixed_bfloat16"


# ---------------------------------------------------------------- data
@dataclass
class DataConfig:
    name: str = MISSING
    image_size: int = MISSING
    channels: int = MISSING
    num_classes: int = MISSING
    cache: bool = MISSING

    def __post_init__(self) -> None:
        _require(self.image_size >= 8, "data.image_size", self.image_size, ">= 8")
        _require(self.channels >= 1, "data.channels", self.channels, ">= 1")
        _require(self.num_classes >= 1, "data.num_classes", self.num_classes, ">= 1 (1 = binary, sigmoid)")


@dataclass
class SyntheticDataConfig(DataConfig):
    num_train: int = MISSING
    num_val: int = MISSING
    max_shapes: int = MISSING
    noise: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.num_train >= 1, "data.num_train", self.num_train, ">= 1")
        _require(self.num_val >= 1, "data.num_val", self.num_val, ">= 1")
        _require(self.max_shapes >= 1, "data.max_shapes", self.max_shapes, ">= 1")


@dataclass
class FolderDataConfig(DataConfig):
    images: str = MISSING
    masks: str = MISSING
    val_images: Optional[str] = None
    val_masks: Optional[str] = None
    val_fraction: float = MISSING
    folds: Optional[int] = None
    fold: int = MISSING
    ignore_index: Optional[int] = None
    palette: Optional[List[List[int]]] = None
    normalize: Normalize = MISSING
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    patch_size: Optional[int] = None
    foreground_oversample: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.folds is not None:
            _require(self.folds >= 2, "data.folds", self.folds, ">= 2 (or null)")
            _require(0 <= self.fold < self.folds, "data.fold", self.fold, f"in 0..{self.folds - 1} (data.folds={self.folds})")
        if (self.val_images is None) != (self.val_masks is None):
            raise ConfigError("data.val_images and data.val_masks go together: set both or neither")
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "between 0 and 1")


@dataclass
class NamedFolderDataConfig(FolderDataConfig):
    """A named dataset in image/mask folders under one `root` (e.g. data=isbi2012)."""

    root: str = MISSING


# ---------------------------------------------------------------- model
@dataclass
class ModelConfig:
    name: str = MISSING
    depth: int = MISSING
    filters: int = MISSING
    batch_norm: bool = MISSING
    dropout: float = MISSING
    pooling: Pooling = MISSING
    upsampling: Upsampling = MISSING
    padding: Padding = MISSING
    kernel_initializer: str = MISSING

    def __post_init__(self) -> None:
        _require(self.depth >= 1, "model.depth", self.depth, ">= 1")
        _require(self.filters >= 1, "model.filters", self.filters, ">= 1")
        _require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "in [0, 1)")


# ---------------------------------------------------------------- loss
@dataclass
class LossConfig:
    name: str = MISSING


@dataclass
class DiceLossConfig(LossConfig):
    smooth: float = MISSING


@dataclass
class FocalLossConfig(LossConfig):
    gamma: float = MISSING
    alpha: float = MISSING


@dataclass
class TverskyLossConfig(LossConfig):
    alpha: float = MISSING
    beta: float = MISSING
    smooth: float = MISSING


# ---------------------------------------------------------------- optimizer
@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: Optional[float] = None
    clipnorm: Optional[float] = None

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optimizer.lr", self.lr, "> 0")


@dataclass
class AdamConfig(OptimizerConfig):
    beta_1: float = MISSING
    beta_2: float = MISSING
    epsilon: float = MISSING


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = MISSING
    nesterov: bool = MISSING


# ---------------------------------------------------------------- augment
@dataclass
class AugmentSettings:
    name: str = MISSING
    flip: bool = MISSING
    rotate90: bool = MISSING
    rotation: float = MISSING
    scale: List[float] = MISSING
    shift: float = MISSING
    elastic_grid: int = MISSING
    elastic_sigma: float = MISSING
    brightness: float = MISSING
    contrast: float = MISSING
    gamma: float = MISSING
    noise: float = MISSING
    blur: float = MISSING

    def transforms(self):
        """The library's AugmentConfig for these settings (it validates them; imports TensorFlow)."""
        from unetlab.data.augment import AugmentConfig

        values = {key: getattr(self, key) for key in self.__dataclass_fields__ if key != "name"}
        return AugmentConfig(**values)


# ---------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    steps_per_epoch: Optional[int] = None
    schedule: Schedule = MISSING
    min_lr: float = MISSING
    plateau_factor: float = MISSING
    plateau_patience: int = MISSING
    early_stopping_patience: Optional[int] = None
    monitor: str = MISSING
    monitor_mode: MonitorMode = MISSING
    precision: Precision = MISSING
    jit_compile: Optional[bool] = None
    run_eagerly: bool = MISSING
    deterministic: bool = MISSING
    verbose: str = MISSING

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "trainer.epochs", self.epochs, ">= 1")
        _require(self.batch_size >= 1, "trainer.batch_size", self.batch_size, ">= 1")
        _require(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "trainer.steps_per_epoch",
                 self.steps_per_epoch, ">= 1 or null")
        _require(0.0 < self.plateau_factor < 1.0, "trainer.plateau_factor", self.plateau_factor, "in (0, 1)")
        _require(self.verbose in ("auto", "0", "1", "2"), "trainer.verbose", self.verbose, "auto, 0, 1 or 2")


# ---------------------------------------------------------------- tracking
@dataclass
class TrackingConfig:
    uri: str = MISSING
    experiment: str = MISSING
    run_name: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    log_checkpoints: bool = MISSING
    log_predictions: bool = MISSING
    num_predictions: int = MISSING
    log_system_metrics: bool = MISSING
    register_model: Optional[str] = None


# ---------------------------------------------------------------- hyperparameter search
@dataclass
class PrunerConfig:
    name: Pruner = MISSING
    n_startup_trials: int = MISSING
    n_warmup_epochs: int = MISSING
    percentile: float = MISSING
    min_resource: int = MISSING
    max_resource: int = MISSING
    reduction_factor: int = MISSING
    lower: Optional[float] = None
    upper: Optional[float] = None

    def __post_init__(self) -> None:
        _require(0.0 < self.percentile < 100.0, "hparams_search.pruner.percentile", self.percentile, "in (0, 100)")
        _require(self.name is not Pruner.threshold or self.lower is not None or self.upper is not None,
                 "hparams_search.pruner.lower", self.lower, "a number (or set pruner.upper) for pruner=threshold")


@dataclass
class SearchConfig:
    study_name: str = MISSING
    storage: Optional[str] = None
    n_trials: int = MISSING
    n_jobs: Optional[int] = None
    sampler: Sampler = MISSING
    seed: int = MISSING
    n_startup_trials: int = MISSING
    pruner: PrunerConfig = MISSING
    max_failure_rate: float = MISSING
    params: Optional[Dict[str, str]] = None
    trial_id: Optional[int] = None  # set by the sweeper for each trial's job

    def __post_init__(self) -> None:
        _require(self.n_trials >= 1, "hparams_search.n_trials", self.n_trials, ">= 1")
        _require(self.n_jobs is None or self.n_jobs >= 1, "hparams_search.n_jobs", self.n_jobs, ">= 1 or null")
        _require(0.0 <= self.max_failure_rate <= 1.0, "hparams_search.max_failure_rate", self.max_failure_rate,
                 "in [0, 1]")


# ---------------------------------------------------------------- inference
@dataclass
class PredictConfig:
    input: Optional[str] = None
    output: str = MISSING
    tile_size: Optional[int] = None
    overlap: float = MISSING
    batch_size: int = MISSING
    tta: TestTimeAugmentation = MISSING
    save_probabilities: bool = MISSING
    save_overlay: bool = MISSING

    def __post_init__(self) -> None:
        _require(0.0 <= self.overlap < 1.0, "predict.overlap", self.overlap, "in [0, 1)")
        _require(self.batch_size >= 1, "predict.batch_size", self.batch_size, ">= 1")
        _require(self.tile_size is None or self.tile_size >= 8, "predict.tile_size", self.tile_size, ">= 8 or null")


@dataclass
class EvaluateConfig:
    output: str = MISSING
    num_worst: int = MISSING


@dataclass
class ExportConfig:
    name: Optional[str] = None
    format: ExportFormat = MISSING
    output: str = MISSING


# ---------------------------------------------------------------- root
METRICS = ("loss", "dice", "iou", "pixel_accuracy")


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    loss: LossConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    augment: AugmentSettings = MISSING
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    predict: PredictConfig = MISSING
    evaluate: EvaluateConfig = MISSING
    export: ExportConfig = MISSING
    task: Task = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    run_id: Optional[str] = None
    model_uri: Optional[str] = None
    checkpoint: Optional[str] = None
    hparams_search: Optional[SearchConfig] = None

    def __post_init__(self) -> None:
        if self.task in (Task.train, Task.preview):
            self._check_training()
        elif self.task is Task.check_data:
            if self.data.name != "folder":
                raise ConfigError("task=check_data needs data=folder data.images=DIR data.masks=DIR")
        else:
            self._check_inference()

    def model_sources(self) -> Dict[str, str]:
        """The model sources given: run_id, model_uri and/or checkpoint."""
        given = {"run_id": self.run_id, "model_uri": self.model_uri, "checkpoint": self.checkpoint}
        return {key: value for key, value in given.items() if value}

    def _check_inference(self) -> None:
        sources = self.model_sources()
        if len(sources) != 1:
            got = f"got {len(sources)}: {', '.join(sources)}" if sources else "got none"
            raise ConfigError(
                f"task={self.task.value} needs exactly one model source: run_id=RUN_ID, "
                f"model_uri=models:/NAME/VERSION or checkpoint=PATH.keras ({got})"
            )
        if self.task is Task.predict and not self.predict.input:
            raise ConfigError("task=predict needs predict.input=DIR_OR_FILE (images to segment)")
        if self.task is Task.evaluate and self.data.name != "folder":
            raise ConfigError("task=evaluate needs data=folder data.images=DIR data.masks=DIR")
        if self.task is Task.export and self.export.format is ExportFormat.mlflow and not self.export.name:
            raise ConfigError("task=export needs export.name=NAME (the registered model name)")

    def input_size(self) -> int:
        """The model's input height/width: the patch size when training on patches, else the image size."""
        return getattr(self.data, "patch_size", None) or self.data.image_size

    def _check_training(self) -> None:
        key = "data.patch_size" if getattr(self.data, "patch_size", None) else "data.image_size"
        try:
            unet_output_size(self.input_size(), self.model.depth, self.model.padding.value)
        except ConfigError as error:
            raise ConfigError(f"{key}={self.input_size()}: {error}") from None
        normalize = getattr(self.data, "normalize", Normalize.scale)
        intensity = [k for k in ("brightness", "contrast", "gamma", "noise", "blur") if getattr(self.augment, k)]
        if normalize in (Normalize.zscore, Normalize.dataset) and intensity:
            raise ConfigError(
                f"augment.{intensity[0]} works on images in [0, 1], but data.normalize={normalize.value} "
                "does not give that range: use data.normalize=scale or minmax, or set "
                + ", ".join(f"augment.{k}=0" for k in intensity)
            )
        binary = self.data.num_classes == 1
        if binary and self.loss.name in ("ce", "ce_dice"):
            raise ConfigError(
                f"loss={self.loss.name} needs data.num_classes >= 2 (softmax); "
                "with data.num_classes=1 (sigmoid) use loss=bce, bce_dice, dice, focal or tversky"
            )
        if not binary and self.loss.name in ("bce", "bce_dice"):
            raise ConfigError(
                f"loss={self.loss.name} needs data.num_classes=1 (sigmoid); "
                f"with data.num_classes={self.data.num_classes} use loss=ce, ce_dice, dice, focal or tversky"
            )
        allowed = monitor_names(self.data.num_classes)
        if self.trainer.monitor not in allowed:
            raise ConfigError(
                f"trainer.monitor={self.trainer.monitor!r} is not a reported metric; "
                f"expected one of {', '.join(allowed)}"
            )


def monitor_names(num_classes: int) -> List[str]:
    """Metric names Keras reports for a run (train and `val_` forms)."""
    names = list(METRICS)
    if num_classes > 1:
        names += [f"{m}_class{c}" for m in ("dice", "iou") for c in range(num_classes)]
    return names + [f"val_{n}" for n in names]


def monitor_mode(name: str, mode: MonitorMode) -> str:
    """'min' for losses, 'max' for scores, unless set explicitly."""
    if mode is not MonitorMode.auto:
        return mode.value
    return "min" if name.endswith("loss") else "max"


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {expected}. Received: {key.rsplit('.', 1)[-1]}={value!r}")


SCHEMAS = {
    "data": {"synthetic": SyntheticDataConfig, "folder": FolderDataConfig, "isbi2012": NamedFolderDataConfig},
    "loss": {
        "bce": LossConfig,
        "ce": LossConfig,
        "dice": DiceLossConfig,
        "bce_dice": DiceLossConfig,
        "ce_dice": DiceLossConfig,
        "focal": FocalLossConfig,
        "tversky": TverskyLossConfig,
    },
    "model": {"unet": ModelConfig},
    "optimizer": {"adam": AdamConfig, "adamw": AdamConfig, "sgd": SGDConfig},
    "augment": {"none": AugmentSettings, "basic": AugmentSettings, "paper": AugmentSettings},
    "trainer": {"default": TrainerConfig},
    "tracking": {"mlflow": TrackingConfig},
    "hparams_search": {"optuna": SearchConfig},
}


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore: `config_schema` and `schema/<group>/<option>`."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    store.store(group="hydra/sweeper", name="unetlab_optuna", provider="unetlab",
                node={"_target_": "hydra_plugins.unetlab_sweeper.optuna_sweeper.OptunaSweeper"})
    for group, options in SCHEMAS.items():
        for option, schema in options.items():
            store.store(group=f"schema/{group}", name=option, node=schema)
