"""The config groups' schemas: one dataclass per option of `conf/<group>/`, types here, values in YAML
(the model group's: `runner.schema.models`; the inference keys, `predict`, `evaluate` and `export`:
`runner.schema.inference`).

Rules on a single key run in `__post_init__` and name the key (`model.dropout must be in [0, 1).
Received: dropout=1.0`); choices come from the library's own lists (`unetlab.names`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from unetlab import names
from unetlab.errors import ConfigError


class Task(Enum):
    train = "train"
    evaluate = "evaluate"
    predict = "predict"
    export = "export"
    check_data = "check_data"
    preview = "preview"
    plan = "plan"
    auto = "auto"  # plan, then train the plan (+experiment=auto)
    compare = "compare"  # run_id=[A,B]: a paired comparison of their evaluations


def choice_enum(name: str, choices: tuple[str, ...]) -> type[Enum]:
    """An Enum of the library's own choice list (`unetlab.names`): the list lives in one place,
    and OmegaConf still refuses a value outside it at composition, naming the key and the choices."""
    return Enum(name, {choice: choice for choice in choices})


Normalize = choice_enum("Normalize", names.NORMALIZE)
Pooling = choice_enum("Pooling", names.POOLING)
Upsampling = choice_enum("Upsampling", names.UPSAMPLING)
Padding = choice_enum("Padding", names.PADDING)
Block = choice_enum("Block", names.BLOCKS)
Schedule = choice_enum("Schedule", names.SCHEDULES)
Objects = choice_enum("Objects", names.OBJECTS)
Distribution = choice_enum("Distribution", names.DISTRIBUTION)


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


Precision = choice_enum("Precision", names.PRECISIONS)


# ---------------------------------------------------------------- data
@dataclass
class DataConfig:
    name: str = MISSING
    image_size: int = MISSING
    channels: int = MISSING
    num_classes: int = MISSING
    cache: bool = MISSING
    objects: Objects = MISSING

    def __post_init__(self) -> None:
        require(self.image_size >= 8, "data.image_size", self.image_size, ">= 8")
        require(self.channels >= 1, "data.channels", self.channels, ">= 1")
        require(self.num_classes >= 1, "data.num_classes", self.num_classes, ">= 1 (1 = binary, sigmoid)")

    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes."""
        return 2


@dataclass
class SyntheticDataConfig(DataConfig):
    num_train: int = MISSING
    num_val: int = MISSING
    max_shapes: int = MISSING
    noise: float = MISSING
    dims: int = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.dims in (2, 3), "data.dims", self.dims, "2 (images) or 3 (volumes)")
        require(self.num_train >= 1, "data.num_train", self.num_train, ">= 1")
        require(self.num_val >= 1, "data.num_val", self.num_val, ">= 1")
        require(self.max_shapes >= 1, "data.max_shapes", self.max_shapes, ">= 1")

    def spatial_dims(self) -> int:
        return self.dims


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
    invert_masks: bool = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.folds is not None:
            require(self.folds >= 2, "data.folds", self.folds, ">= 2 (or null)")
            require(0 <= self.fold < self.folds, "data.fold", self.fold, f"in 0..{self.folds - 1} (data.folds={self.folds})")
        if (self.val_images is None) != (self.val_masks is None):
            raise ConfigError("data.val_images and data.val_masks go together: set both or neither")
        require(0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "between 0 and 1")


@dataclass
class NNUNetDataConfig(DataConfig):
    """data=nnunet: an nnU-Net v2 raw dataset (`unetlab.data.nnunet_source`); channels, classes and 2D/3D
    come from its dataset.json (`channels` and `num_classes` 0: as it says), the patch and spacing from its plan
    unless set."""

    root: str = MISSING
    val_fraction: float = MISSING
    folds: Optional[int] = None
    fold: int = MISSING
    patch_size: Optional[List[int]] = None
    target_spacing: Optional[List[float]] = None
    normalization: Optional[List[str]] = None
    max_patch_voxels: int = MISSING
    foreground_oversample: float = MISSING
    patches_per_epoch: int = MISSING

    def __post_init__(self) -> None:
        from unetlab.data.nnunet_raw import read_raw_dataset
        from unetlab.data.nnunet_source import head_classes

        dataset = read_raw_dataset(self.root)
        for key, found in (("channels", len(dataset.channel_names)), ("num_classes", head_classes(dataset))):
            given = getattr(self, key)
            if given and given != found:
                raise ConfigError(f"data.{key}={given}, but {self.root}/dataset.json gives {found}: leave "
                                  f"data.{key}=0 (the dataset's)")
            setattr(self, key, found)
        self._dims = dataset.dims
        super().__post_init__()
        if self.folds is not None:
            require(self.folds >= 2, "data.folds", self.folds, ">= 2 (or null)")
            require(0 <= self.fold < self.folds, "data.fold", self.fold, f"in 0..{self.folds - 1} (data.folds={self.folds})")
        require(0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "between 0 and 1")
        require(self.max_patch_voxels >= 8**self._dims, "data.max_patch_voxels", self.max_patch_voxels,
                f">= {8**self._dims}")
        require(self.patches_per_epoch >= 1, "data.patches_per_epoch", self.patches_per_epoch, ">= 1")
        if self.normalization is not None:
            require(len(self.normalization) == self.channels and set(self.normalization) <= set(
                names.VOLUME_NORMALIZATION), "data.normalization", list(self.normalization),
                f"one of {', '.join(names.VOLUME_NORMALIZATION)} per channel ({self.channels}), or null")

    def spatial_dims(self) -> int:
        return self._dims


@dataclass
class NamedFolderDataConfig(FolderDataConfig):
    """A named dataset in image/mask folders under one `root` (e.g. data=isbi2012)."""

    root: str = MISSING


# ---------------------------------------------------------------- loss
@dataclass
class LossConfig:
    name: str = MISSING


@dataclass
class DiceLossConfig(LossConfig):
    smooth: float = MISSING


@dataclass
class BorderWeightedLossConfig(LossConfig):
    """A loss weighted per pixel by the U-Net paper's border weight map (`unetlab.data.weights`)."""

    w0: float = MISSING
    sigma: float = MISSING
    class_balance: bool = MISSING

    def __post_init__(self) -> None:
        require(self.w0 >= 0, "loss.w0", self.w0, ">= 0")
        require(self.sigma > 0, "loss.sigma", self.sigma, "> 0 (pixels)")


@dataclass
class BorderWeightedDiceLossConfig(BorderWeightedLossConfig):
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
        require(self.lr > 0, "optimizer.lr", self.lr, "> 0")


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


# ---------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    schedule: Schedule = MISSING
    min_lr: float = MISSING
    plateau_factor: float = MISSING
    plateau_patience: int = MISSING
    early_stopping_patience: Optional[int] = None
    time_limit: Optional[float] = None
    monitor: str = MISSING
    monitor_mode: MonitorMode = MISSING
    precision: Precision = MISSING
    jit_compile: Optional[bool] = None
    distribution: Distribution = MISSING
    run_eagerly: bool = MISSING
    deterministic: bool = MISSING
    verbose: str = MISSING
    checkpoint_every: int = MISSING
    encoder_lr_scale: float = MISSING

    def __post_init__(self) -> None:
        require(self.encoder_lr_scale > 0, "trainer.encoder_lr_scale", self.encoder_lr_scale, "> 0")
        require(self.epochs >= 1, "trainer.epochs", self.epochs, ">= 1")
        require(self.batch_size >= 1, "trainer.batch_size", self.batch_size, ">= 1")
        require(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "trainer.steps_per_epoch",
                 self.steps_per_epoch, ">= 1 or null")
        require(self.validation_steps is None or self.validation_steps >= 1, "trainer.validation_steps",
                self.validation_steps, ">= 1 or null")
        require(self.checkpoint_every >= 1, "trainer.checkpoint_every", self.checkpoint_every, ">= 1")
        require(self.time_limit is None or self.time_limit > 0, "trainer.time_limit", self.time_limit,
                "> 0 (minutes) or null")
        require(0.0 < self.plateau_factor < 1.0, "trainer.plateau_factor", self.plateau_factor, "in (0, 1)")
        require(self.verbose in ("auto", "0", "1", "2"), "trainer.verbose", self.verbose, "auto, 0, 1 or 2")


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
        require(0.0 < self.percentile < 100.0, "hparams_search.pruner.percentile", self.percentile, "in (0, 100)")
        require(self.name is not Pruner.threshold or self.lower is not None or self.upper is not None,
                 "hparams_search.pruner.lower", self.lower, "a number (or set pruner.upper) for pruner=threshold")


@dataclass
class SearchConfig:
    study_name: Optional[str] = None  # None: named after its search space (sweeps.study.study_name)
    storage: Optional[str] = None
    n_trials: int = MISSING
    n_jobs: Optional[int] = None
    sampler: Sampler = MISSING
    seed: int = MISSING
    n_startup_trials: int = MISSING
    pruner: PrunerConfig = MISSING
    max_failure_rate: float = MISSING
    heartbeat_interval: int = MISSING
    grace_period: int = MISSING
    params: Optional[Dict[str, str]] = None
    trial_id: Optional[int] = None  # set by the sweeper for each trial's job

    def __post_init__(self) -> None:
        require(self.n_trials >= 1, "hparams_search.n_trials", self.n_trials, ">= 1")
        require(self.n_jobs is None or self.n_jobs >= 1, "hparams_search.n_jobs", self.n_jobs, ">= 1 or null")
        require(0.0 <= self.max_failure_rate <= 1.0, "hparams_search.max_failure_rate", self.max_failure_rate,
                 "in [0, 1]")
        require(self.heartbeat_interval >= 1, "hparams_search.heartbeat_interval", self.heartbeat_interval, ">= 1")
        require(self.grace_period > self.heartbeat_interval, "hparams_search.grace_period", self.grace_period,
                 f"> hparams_search.heartbeat_interval={self.heartbeat_interval}")


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    """A ConfigError naming `key`, what it must be and the value received, unless `ok`."""
    if not ok:
        raise ConfigError(f"{key} must be {expected}. Received: {key.rsplit('.', 1)[-1]}={value!r}")
