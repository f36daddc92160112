"""The Hydra application: compose `conf/`, convert it once to the typed `Config`, run its task."""

from __future__ import annotations

import os
import sys
import uuid
from importlib import resources
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from unetlab.errors import ConfigError, UnetlabError

from .schema import Task, register_configs
from .settings import to_config


def register_experiments() -> None:
    """Store each `experiments/NAME.yaml` preset as `+experiment=NAME` (a global patch)."""
    store = ConfigStore.instance()
    for preset in sorted(resources.files("runner.experiments").iterdir(), key=lambda p: p.name):
        if preset.name.endswith(".yaml"):
            node = OmegaConf.create(preset.read_text())
            store.store(group="experiment", name=preset.name[: -len(".yaml")], node=node, package="_global_")


def unique_suffix() -> str:
    """`${unique_suffix:}`: this process's id and a random tag (the same on every use)."""
    return f"{os.getpid()}{uuid.uuid4().hex[:4]}"


def register() -> None:
    """Everything Hydra must know before composing: schemas, experiment presets, our sweeper,
    the `unique_suffix` resolver of the output folders."""
    from hydra_plugins.unetlab_sweeper import register_sweeper

    if not OmegaConf.has_resolver("unique_suffix"):
        OmegaConf.register_new_resolver("unique_suffix", unique_suffix, use_cache=True)
    from .plan_file import register_plans

    register_configs()
    register_experiments()
    register_plans()
    register_sweeper()


@hydra.main(version_base="1.3", config_path="pkg://runner.conf", config_name="config")
def run(cfg: DictConfig) -> Any:
    """Check the config and run the task named by `task`. In a single run a user mistake exits
    here with one line; in a sweep it fails only its job, and Hydra reports it when the sweep ends."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .logged_run import logged_config
    from .redact import install_log_filter, mask_secrets, remember_env_secrets
    from .tasks import task_function

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        install_log_filter()
        remember_env_secrets(cfg)
        config = to_config(logged_config(cfg))
        if config.hparams_search is not None and not multirun:
            raise ConfigError("hparams_search=optuna is a search over many runs: add -m "
                              "(python -m runner -m hparams_search=optuna)")
        if config.task is Task.auto:
            return plan_and_train(config)
        return task_function(config.task)(config)
    except UnetlabError as error:
        if multirun:
            raise
        print(f"error: {mask_secrets(str(error))}", file=sys.stderr)
        sys.exit(2)


def plan_and_train(config) -> Any:
    """`task=auto` (+experiment=auto): `task=plan`, then `task=train` on this command's overrides with the plan
    file on top, as `+experiment=plans/NAME` composes it; the training run is tagged with the plan's run."""
    from hydra import compose

    from .plan_file import user_overrides
    from .settings import to_config
    from .tasks import task_function

    planned = task_function(Task.plan)(config)
    cfg = compose("config", overrides=[f"+experiment={planned['experiment']}", *user_overrides(), "task=train",
                                       f"+tracking.tags.plan_run={planned['run_id']}"])
    return task_function(Task.train)(to_config(cfg))
