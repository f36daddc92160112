"""The Hydra application: compose `conf/`, validate, dispatch to the task."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from unetlab.errors import UnetlabError

from .schema import register_configs


def register_experiments() -> None:
    """Store each `experiments/NAME.yaml` preset as `+experiment=NAME` (a global patch)."""
    store = ConfigStore.instance()
    for preset in sorted(resources.files("runner.experiments").iterdir(), key=lambda p: p.name):
        if preset.name.endswith(".yaml"):
            node = OmegaConf.create(preset.read_text())
            store.store(group="experiment", name=preset.name[: -len(".yaml")], node=node, package="_global_")


def register() -> None:
    """Everything Hydra must know before composing: schemas, experiment presets, our sweeper
    (registered by hand: Hydra's plugin scan misses packages installed in editable mode)."""
    from hydra.core.plugins import Plugins
    from hydra_plugins.unetlab_sweeper.optuna_sweeper import OptunaSweeper

    register_configs()
    register_experiments()
    Plugins.instance().register(OptunaSweeper)


@hydra.main(version_base="1.3", config_path="pkg://runner.conf", config_name="config")
def run(cfg: DictConfig) -> Any:
    """Run the task named by `task`. In a single run a user mistake exits here with one
    line; in a sweep it fails only its job, and Hydra reports it when the sweep ends."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .tasks import TASKS

    try:
        return TASKS[cfg.task.value](cfg)
    except UnetlabError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
