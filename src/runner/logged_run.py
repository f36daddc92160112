"""Continue or reproduce a logged run: `resume=RUN_ID` and `+from_run=RUN_ID`.

Both start from the run's own `config.yaml` (its resolved config, as logged), typed by the
same schemas as a composed config. `+from_run` applies every command-line override on top
and starts a new run tagged `from_run`; `resume` accepts only the overrides that cannot change
what was trained (`SAFE_FOR_RESUME`) and continues the same run from its training state.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from unetlab.errors import ConfigError, DataError

from .schema import SCHEMAS, Config

SAFE_FOR_RESUME = ("resume", "trainer.epochs", "trainer.checkpoint_every", "trainer.verbose", "tracking.uri")
CONFIG_ARTIFACT = "config.yaml"


def logged_config(cfg: DictConfig) -> DictConfig:
    """`cfg` itself, or, with `resume=` or `+from_run=`, the logged run's config with the
    command-line overrides allowed on top (typed, checked later by `settings.to_config`)."""
    from_run, resume = cfg.get("from_run"), cfg.get("resume")
    if not (from_run or resume):
        return cfg
    if from_run and resume:
        raise ConfigError("resume= and +from_run= exclude each other: resume continues a run, "
                          "+from_run starts a new one from its config")
    key, run_id = ("resume", resume) if resume else ("from_run", from_run)
    overrides = override_keys()
    if resume:
        refused = [name for name in overrides if name not in SAFE_FOR_RESUME]
        if refused:
            raise ConfigError(f"resume={run_id} continues the run with its own config; it cannot take "
                              f"{', '.join(refused)} (allowed: {', '.join(SAFE_FOR_RESUME[1:])}; "
                              f"to change more, start a new run with +from_run={run_id})")
    values = run_config(run_id, cfg.tracking.uri, key)
    for name in overrides:
        if name in ("from_run", "resume"):
            continue
        if OmegaConf.select(cfg, name) is None and name.split(".")[0] not in values:
            raise ConfigError(f"{key}={run_id}: override {name} names no key of the run's config "
                              "(presets such as +experiment= cannot go on top of a logged config; set their keys)")
        set_path(values, name, _resolved(cfg, name))
    values.update(output_dir=str(cfg.output_dir), resume=resume or None, hparams_search=None)
    values["tracking"]["uri"] = cfg.tracking.uri  # where the run was found
    if from_run:
        values["tracking"]["tags"] = {**values["tracking"].get("tags", {}), "from_run": from_run}
    return typed(values, f"{key}={run_id}")


def override_keys() -> list[str]:
    """The keys the command line overrides (`+a.b=1` -> `a.b`), in order."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task]


def run_config(run_id: str, tracking_uri: str, key: str) -> dict[str, Any]:
    """The logged `config.yaml` of a live task=train run, as plain values."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from .tracking import live_run

    client = mlflow.MlflowClient(tracking_uri)
    run = live_run(run_id, tracking_uri, key)
    if run.data.tags.get("task") != "train":
        raise DataError(f"{key}={run_id} is a task={run.data.tags.get('task', '?')} run, not a task=train run")
    with tempfile.TemporaryDirectory(prefix="unetlab-config-") as target:
        try:
            path = Path(client.download_artifacts(run_id, CONFIG_ARTIFACT, target))
            return yaml.safe_load(path.read_text())
        except (MlflowException, OSError, yaml.YAMLError):
            raise DataError(f"{key}={run_id} has no readable {CONFIG_ARTIFACT} artifact") from None


def _resolved(cfg: DictConfig, name: str) -> Any:
    node = OmegaConf.select(cfg, name)
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def set_path(values: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for parent in parents:
        values = values.setdefault(parent, {})
    values[last] = value


def typed(values: dict[str, Any], origin: str) -> DictConfig:
    """Plain config values as the typed tree `settings.to_config` reads: each group by the
    schema whose fields are exactly its keys (the option it was composed from)."""
    groups = {}
    for group, options in SCHEMAS.items():
        node = values.get(group)
        if node is None:
            continue
        schema = next((s for s in options.values() if {f.name for f in dataclasses.fields(s)} == set(node)), None)
        if schema is None:
            raise ConfigError(f"{origin}: its {group} config matches no {group} option of this version "
                              f"({', '.join(options)})")
        groups[group] = OmegaConf.merge(OmegaConf.structured(schema), node)
    rest = {key: value for key, value in values.items() if key not in groups}
    root = OmegaConf.merge(OmegaConf.structured(Config), rest)
    for group, node in groups.items():
        root[group] = node
    return root


def fetch_training_state(run_id: str, directory: Path):
    """The latest training state of run `run_id`, with its best.keras, copied into `directory`
    (from the run's artifacts, else from the folder the run wrote them to); None if it has none."""
    import shutil

    import mlflow

    from unetlab.checkpoints import Checkpoints, latest_state

    from .tracking import CHECKPOINTS, CHECKPOINTS_DIR_TAG

    client = mlflow.MlflowClient()
    names = [*Checkpoints.STATE_SLOTS, Checkpoints.BEST]
    logged = {item.path.rsplit("/", 1)[-1] for item in client.list_artifacts(run_id, CHECKPOINTS)}
    local = Path(client.get_run(run_id).data.tags.get(CHECKPOINTS_DIR_TAG, "") or directory)
    for name in names:
        if name in logged:
            client.download_artifacts(run_id, f"{CHECKPOINTS}/{name}", str(directory))
        elif (local / name).is_file() and local.resolve() != directory.resolve():
            shutil.copy2(local / name, directory / name)
    return latest_state([directory / name for name in Checkpoints.STATE_SLOTS])
