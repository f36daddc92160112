"""Typed schema of the composed config: types here, values in `conf/*.yaml`.

Every group option has a dataclass (`runner.schema.groups`); `register_configs()` stores
them in Hydra's ConfigStore, and each YAML option lists its schema first in its defaults
list (`- /schema/<group>/<option>@_here_`). A typo (`model.filtres=64`) or a wrong type
(`model.filters=abc`) then fails at composition. Rules that tie several keys together live
in `Config.__post_init__` and run when `app` converts the composed config, once, to `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from unetlab import names
from unetlab.errors import ConfigError

from .groups import (AdamConfig, AugmentSettings, BorderWeightedDiceLossConfig, BorderWeightedLossConfig,
                     DataConfig, DiceLossConfig, FocalLossConfig, FolderDataConfig, LossConfig, MonitorMode,
                     NamedFolderDataConfig, NNUNetDataConfig, Normalize, OptimizerConfig, SearchConfig, SGDConfig, SyntheticDataConfig, Task,
                     TrackingConfig, TrainerConfig, TverskyLossConfig)
from .models import EncoderUNetConfig, ModelConfig, NNUNetConfig, UNetConfig, UNetPlusPlusConfig
from .inference import CompareConfig, DecisionConfig, EvaluateConfig, ExportConfig, ExportFormat, PredictConfig
from .planning import PlanConfig

# The layout of a logged config.yaml: raised when a release renames or removes a key (with its entry
# in runner.logged_run.MIGRATIONS); an added key needs no new version. A config without one is version 1.
CONFIG_VERSION = 1


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
    decision: DecisionConfig = MISSING
    compare: CompareConfig = MISSING
    export: ExportConfig = MISSING
    plan: PlanConfig = MISSING
    task: Task = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    run_id: Optional[Any] = None  # one run id, or a list of them: an ensemble (checked in __post_init__)
    model_uri: Optional[str] = None
    checkpoint: Optional[str] = None
    hparams_search: Optional[SearchConfig] = None
    resume: Optional[str] = None  # a task=train run id: continue that run (its own config, see runner.resume)
    config_version: int = CONFIG_VERSION  # written into config.yaml; runner.logged_run reads older ones

    def __post_init__(self) -> None:
        if self.config_version != CONFIG_VERSION:  # a logged older one is migrated before it gets here
            raise ConfigError(f"config_version={self.config_version}: it is written by unetlab, not set (this "
                              f"release writes config_version={CONFIG_VERSION}); leave it out")
        self.run_id = checked_run_id(self.run_id)
        if self.task in (Task.train, Task.preview):
            self._check_training()
        elif self.task in (Task.plan, Task.auto):
            if self.data.name not in ("folder", "nnunet"):
                raise ConfigError(f"task={self.task.value} plans from a dataset: data=nnunet data.root=DIR, or "
                                  "data=folder data.images=DIR data.masks=DIR")
        elif self.task is Task.compare:
            if self.compare.experiment and self.run_id:
                raise ConfigError(f"task=compare takes run_id=[A,B] or compare.experiment=NAME, not both (got "
                                  f"run_id={self.run_id} and compare.experiment={self.compare.experiment})")
            if not self.compare.experiment and len(self.run_ids()) != 2:
                raise ConfigError(f"task=compare compares two runs: run_id=[A,B], or the two best of "
                                  f"compare.experiment=NAME (got {len(self.run_ids())}: run_id={self.run_id})")
        elif self.task is Task.check_data:
            if self.data.name not in ("folder", "nnunet"):
                raise ConfigError("task=check_data needs data=folder data.images=DIR data.masks=DIR, or data=nnunet "
                                  "data.root=DIR")
        else:
            self._check_inference()

    def run_ids(self) -> List[str]:
        """The runs that `run_id=` names: none, one, or several (an ensemble)."""
        if not self.run_id:
            return []
        return [self.run_id] if isinstance(self.run_id, str) else list(self.run_id)

    def model_sources(self) -> Dict[str, Any]:
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
        if self.task is Task.evaluate and self.data.name not in ("folder", "nnunet"):
            raise ConfigError("task=evaluate needs data=folder data.images=DIR data.masks=DIR (or, for a model "
                              "trained with data=nnunet, data=nnunet data.root=DIR)")
        if self.task is Task.export and len(self.run_ids()) > 1:
            raise ConfigError(f"task=export takes one model: run_id=[{','.join(self.run_ids())}] names "
                              f"{len(self.run_ids())}; export each run on its own (run_id=RUN_ID), or predict and "
                              "evaluate with the ensemble")
        if self.task is Task.export and self.export.format is ExportFormat.mlflow and not self.export.name:
            raise ConfigError("task=export needs export.name=NAME (the registered model name)")

    def monitor_direction(self) -> str:
        """'min' or 'max': which way `trainer.monitor` improves."""
        return monitor_mode(self.trainer.monitor, self.trainer.monitor_mode)

    def input_size(self) -> int:
        """The model's input size along each spatial axis: the patch size when training on patches, else the
        image size."""
        return getattr(self.data, "patch_size", None) or self.data.image_size

    def input_shape(self) -> tuple[int, ...]:
        """The model's input shape: `input_size` along each of the data's spatial axes (or the patch size per
        axis, `data=nnunet`), then the channels."""
        size = self.input_size()
        spatial = tuple(size) if isinstance(size, (list, tuple)) else (size,) * self.data.spatial_dims()
        return spatial + (self.data.channels,)

    def _check_training(self) -> None:
        self._check_dims()
        planned = isinstance(self.data, NNUNetDataConfig) and self.data.patch_size is None  # a multiple of the net's
        key = "data.patch_size" if getattr(self.data, "patch_size", None) else "data.image_size"
        try:
            if not planned:
                self.model.check_input_size(self.input_shape()[:-1])
        except ConfigError as error:
            raise ConfigError(f"{key}={self.input_size()}: {error}") from None
        normalize = Normalize.zscore if isinstance(self.data, NNUNetDataConfig) else getattr(self.data, "normalize",
                                                                                              Normalize.scale)
        intensity = [k for k in ("brightness", "contrast", "gamma", "noise", "blur") if getattr(self.augment, k)]
        if normalize in (Normalize.zscore, Normalize.dataset) and intensity:
            nnunet = isinstance(self.data, NNUNetDataConfig)
            given = "data=nnunet (z-score or CT normalisation)" if nnunet else f"data.normalize={normalize.value}"
            raise ConfigError(
                f"augment.{intensity[0]} works on images in [0, 1], but {given} does not give that range: "
                + ("" if nnunet else "use data.normalize=scale or minmax, or ")
                + "set " + ", ".join(f"augment.{k}=0" for k in intensity)
            )
        if self.data.spatial_dims() == 3 and self.augment.blur:
            raise ConfigError(f"augment.blur works on 2D images; volumes take every other augmentation. "
                              f"Received: augment.blur={self.augment.blur}")
        binary = self.data.num_classes == 1
        if binary and self.loss.name in SOFTMAX_LOSSES:
            raise ConfigError(
                f"loss={self.loss.name} needs data.num_classes >= 2 (softmax); with data.num_classes=1 "
                f"(sigmoid) use loss={self.loss.name.replace('ce', 'bce', 1)}, dice, focal or tversky"
            )
        if not binary and self.loss.name in SIGMOID_LOSSES:
            raise ConfigError(
                f"loss={self.loss.name} needs data.num_classes=1 (sigmoid); with data.num_classes="
                f"{self.data.num_classes} use loss={self.loss.name.replace('bce', 'ce', 1)}, dice, focal or tversky"
            )
        allowed = names.metric_names(self.data.num_classes)
        if self.trainer.monitor not in allowed:
            raise ConfigError(
                f"trainer.monitor={self.trainer.monitor!r} is not a reported metric; "
                f"expected one of {', '.join(allowed)}"
            )
        self._check_fine_tuning()

    def _check_dims(self) -> None:
        """model.dims, where set, is the data's; a 3D network only from a family that builds one."""
        dims, kind = self.data.spatial_dims(), "volumes" if self.data.spatial_dims() == 3 else "images"
        if self.model.dims is not None and self.model.dims != dims:
            raise ConfigError(f"model.dims={self.model.dims}, but data={self.data.name} gives {dims}D {kind}: "
                              f"leave model.dims=null (the data's) or choose {self.model.dims}D data")
        if dims == 3 and not self.model.VOLUMES:
            raise ConfigError(f"model={self.model.name} builds 2D networks only, and data={self.data.name} gives "
                              f"volumes: use model=unet or model=nnunet")

    def _check_fine_tuning(self) -> None:
        """trainer.encoder_lr_scale and model.freeze_encoder_epochs need an encoder, and epochs after the freeze."""
        frozen = self.model.frozen_encoder_epochs()
        if self.trainer.encoder_lr_scale != 1.0 and not isinstance(self.model, EncoderUNetConfig):
            raise ConfigError(f"trainer.encoder_lr_scale={self.trainer.encoder_lr_scale} scales a pretrained "
                              f"encoder's learning rate, and model={self.model.name} has none: use "
                              f"model=encoder_unet, or leave trainer.encoder_lr_scale=1.0")
        if frozen and frozen >= self.trainer.epochs:
            raise ConfigError(f"model.freeze_encoder_epochs={frozen} must be below trainer.epochs="
                              f"{self.trainer.epochs}, or the encoder is never trained (the model would be "
                              f"the pretrained encoder and a decoder)")


def checked_run_id(value: Any) -> Any:
    """`run_id` as None, one run id, or a list of two or more different run ids (`[A]` is `A`);
    a one-line ConfigError naming run_id otherwise."""
    if value is None or isinstance(value, str):
        return value
    ids = [str(item) if isinstance(item, int) and not isinstance(item, bool) else item
           for item in (value if isinstance(value, (list, tuple)) else [value])]
    if not ids or not all(isinstance(item, str) and item for item in ids):
        raise ConfigError(f"run_id must be a run id or a list of run ids (run_id=[A,B]), each a non-empty "
                          f"string. Received: run_id={value!r}")
    twice = next((item for index, item in enumerate(ids) if item in ids[:index]), None)
    if twice:
        raise ConfigError(f"run_id names run {twice} twice: the runs of an ensemble must differ. "
                          f"Received: run_id={value!r}")
    return ids[0] if len(ids) == 1 else ids


def monitor_mode(name: str, mode: MonitorMode) -> str:
    """'min' for losses, 'max' for scores, unless set explicitly."""
    if mode is not MonitorMode.auto:
        return mode.value
    return "min" if name.endswith("loss") else "max"


SIGMOID_LOSSES = names.losses_for("sigmoid")  # names for a sigmoid head
SOFTMAX_LOSSES = names.losses_for("softmax")  # the same losses for a softmax head
# the parameters of each loss class of unetlab.losses (the registry, LOSS_NAMES, names the class)
LOSS_SCHEMAS = {"Crossentropy": LossConfig, "DiceLoss": DiceLossConfig, "CrossentropyDiceLoss": DiceLossConfig,
                "FocalLoss": FocalLossConfig, "TverskyLoss": TverskyLossConfig,
                "WeightedCrossentropy": BorderWeightedLossConfig,
                "WeightedCrossentropyDice": BorderWeightedDiceLossConfig}

SCHEMAS = {
    "data": {"synthetic": SyntheticDataConfig, "synthetic3d": SyntheticDataConfig, "folder": FolderDataConfig, "isbi2012": NamedFolderDataConfig,
             "nnunet": NNUNetDataConfig},
    "loss": {name: LOSS_SCHEMAS[loss.cls] for name, loss in names.LOSS_NAMES.items()},
    "model": {"unet": UNetConfig, "unetpp": UNetPlusPlusConfig, "encoder_unet": EncoderUNetConfig,
              "nnunet": NNUNetConfig},
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
    for group, options in SCHEMAS.items():
        for option, schema in options.items():
            store.store(group=f"schema/{group}", name=option, node=schema)
