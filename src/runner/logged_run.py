"""Continue or reproduce a logged run: `resume=RUN_ID` and `+from_run=RUN_ID`.

Both start from the run's own `config.yaml` (its resolved config, as logged), typed by the
same schemas as a composed config. `+from_run` applies every command-line override on top
and starts a new run tagged `from_run`; `resume` accepts only the overrides that cannot change
what was trained (`SAFE_FOR_RESUME`) and continues the same run from its training state.

A config logged by an older release is read in three steps: `MIGRATIONS` renames and removes the
keys its `config_version` had and this one has not; each group is typed by the option it was
composed from (its `name`); a key added since takes its default from that option as composed today.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import typing
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from unetlab.errors import ConfigError, DataError

from .schema import CONFIG_VERSION, SCHEMAS, Config
from .settings import checked

SAFE_FOR_RESUME = ("resume", "trainer.epochs", "trainer.checkpoint_every", "trainer.verbose", "tracking.uri")
CONFIG_ARTIFACT = "config.yaml"
FIRST_VERSION = 1  # the config_version of a config.yaml that has none (logged before versions were)

# MIGRATIONS[N] takes a logged config of version N to version N + 1, applied in order before typing:
# {"renamed": {"old.dotted.key": "new.dotted.key"}, "removed": ["dotted.key", ...]}. A key added to
# a schema needs no entry (it takes its option's default); one renamed or removed raises CONFIG_VERSION.
MIGRATIONS: dict[int, dict[str, Any]] = {}


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
    """Plain logged config values, of this version or an older one, as the typed tree
    `settings.to_config` reads: migrated (`MIGRATIONS`), each group typed by the option it was
    composed from (`logged_option`), and keys added since filled from those options' defaults."""
    values = migrated(copy.deepcopy(values), origin)
    choices = {group: logged_option(group, values[group], origin) for group in SCHEMAS if values.get(group) is not None}
    if lacks_keys(values, choices):
        fill(values, composed(choices))
    groups = {group: checked(lambda: OmegaConf.merge(OmegaConf.structured(SCHEMAS[group][option]), values[group]))
              for group, option in choices.items()}
    rest = {key: value for key, value in values.items() if key not in groups}
    root = checked(lambda: OmegaConf.merge(OmegaConf.structured(Config), rest))
    for group, node in groups.items():
        root[group] = node
    return root


def migrated(values: dict[str, Any], origin: str) -> dict[str, Any]:
    """`values` (changed in place) brought from its `config_version` to `CONFIG_VERSION`."""
    version = values.pop("config_version", FIRST_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < FIRST_VERSION:
        raise ConfigError(f"{origin}: its config_version must be a whole number >= {FIRST_VERSION}. "
                          f"Received: config_version={version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(f"{origin}: its config_version={version} is newer than this unetlab reads (up to "
                          f"config_version={CONFIG_VERSION}): upgrade unetlab to resume or reproduce it")
    for step in range(version, CONFIG_VERSION):
        change = MIGRATIONS.get(step, {})
        for old, new in change.get("renamed", {}).items():
            if has_path(values, old):
                set_path(values, new, pop_path(values, old))
        for key in change.get("removed", ()):
            if has_path(values, key):
                pop_path(values, key)
    values["config_version"] = CONFIG_VERSION
    return values


def logged_option(group: str, node: dict[str, Any], origin: str) -> str:
    """The option of `group` a logged group was composed from: the one its `name` names (the only
    one, in a group without names) if that option's schema takes every logged key; else the options
    whose schema takes them and whose composed `name` is the logged one (`data=isbi2012` logs
    `data.name=folder`), the smallest schema first."""
    options, name = SCHEMAS[group], node.get("name")
    takes = [option for option, schema in options.items() if set(node) <= field_names(schema)]
    direct = name if name in options else (next(iter(options)) if name is None and len(options) == 1 else None)
    if direct in takes:
        return direct
    named = [option for option in takes if composed({group: option})[group].get("name") == name]
    if named:
        return min(named, key=lambda option: len(field_names(options[option])))
    if direct is None and name is not None:
        raise ConfigError(f"{origin}: its {group}.name={name} is no {group} option of this version "
                          f"({', '.join(options)})")
    closest = options[direct] if direct else options[min(options, key=lambda o: len(set(node) - field_names(options[o])))]
    unknown = ", ".join(f"{group}.{key}" for key in node if key not in field_names(closest))
    raise ConfigError(f"{origin}: its {group} config has keys no {group} option of this version takes: {unknown} "
                      "(renamed or removed without a migration)")


def field_names(schema: type) -> set[str]:
    return {field.name for field in dataclasses.fields(schema)}


def lacks_keys(values: dict[str, Any], choices: dict[str, str]) -> bool:
    """Whether the config lacks a key its schemas declare (one added since it was logged)."""
    def lacks(node: Any, schema: type) -> bool:
        hints = typing.get_type_hints(schema)
        for field in dataclasses.fields(schema):
            if field.name not in node:
                return True
            inner = choices.get(field.name) if schema is Config else None
            inner = SCHEMAS[field.name][inner] if inner else hints[field.name]
            if dataclasses.is_dataclass(inner) and isinstance(node[field.name], dict) and lacks(node[field.name], inner):
                return True
        return False

    return lacks(values, Config)


def fill(values: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Add to `values`, at every depth, the keys of `defaults` it lacks."""
    for key, default in defaults.items():
        if key not in values:
            values[key] = default
        elif isinstance(values[key], dict) and isinstance(default, dict):
            fill(values[key], default)


def composed(choices: dict[str, str]) -> dict[str, Any]:
    """The config composed today from the options `choices` ({group: option}), unresolved: the
    defaults a logged config lacks. Within the app Hydra is initialised; elsewhere it is for this call."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from .schema import register_configs

    overrides = [f"{group}={option}" for group, option in choices.items()]
    if GlobalHydra.instance().is_initialized():
        cfg = compose("config", overrides=overrides)
    else:
        register_configs()
        with initialize_config_module(config_module="runner.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=False)


def has_path(values: dict, dotted: str) -> bool:
    *parents, last = dotted.split(".")
    for parent in parents:
        values = values.get(parent)
        if not isinstance(values, dict):
            return False
    return last in values


def pop_path(values: dict, dotted: str) -> Any:
    *parents, last = dotted.split(".")
    for parent in parents:
        values = values[parent]
    return values.pop(last)


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
