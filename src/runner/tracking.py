"""MLflow: run lifecycle, params from the config, tags, and per-epoch metrics."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

import keras
import mlflow
from omegaconf import DictConfig, OmegaConf

from .schema import TrackingConfig

log = logging.getLogger(__name__)

_RETRIES = 8


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts -> {'model.filters': '32', ...}; lists and scalars become strings."""
    if isinstance(tree, dict):
        flat: dict[str, str] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    value = tree.value if isinstance(tree, Enum) else tree
    return {prefix[:-1]: str(value)}


def config_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as MLflow params with dotted keys. A search's space is left out: a
    trial's own values are its params, and the parent run holds the space (optuna/search_space.json)."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {key: value for key, value in params.items() if not key.startswith("hparams_search.params")}


def git_commit() -> dict[str, str]:
    """Commit of the unetlab source tree (editable installs), with a dirty flag."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit, "git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


def retry_locked(action, *args, **kwargs):
    """Call an MLflow or Optuna storage action, retrying while SQLite reports 'database is locked'."""
    for attempt in range(_RETRIES):
        try:
            return action(*args, **kwargs)
        except Exception as error:  # MlflowException, Optuna's StorageInternalError, SQLAlchemy's OperationalError
            if not is_locked(error) or attempt == _RETRIES - 1:
                raise
            time.sleep(0.2 * 2**attempt)


def is_locked(error: BaseException | None) -> bool:
    """'database is locked' in the error or anything that caused it (Optuna wraps SQLAlchemy's error)."""
    while error is not None:
        if "database is locked" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def use_experiment(tracking) -> str:
    """Point MLflow at `tracking.uri` and `tracking.experiment` (created on first use); return its id."""
    mlflow.set_tracking_uri(tracking.uri)
    experiment = retry_locked(mlflow.get_experiment_by_name, tracking.experiment)
    if experiment is None:
        try:
            retry_locked(mlflow.create_experiment, tracking.experiment,
                         tags={"mlflow.experimentKind": "custom_model_development"})
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by a parallel job
        experiment = retry_locked(mlflow.get_experiment_by_name, tracking.experiment)
    retry_locked(mlflow.set_experiment, experiment_id=experiment.experiment_id)
    return experiment.experiment_id


@contextlib.contextmanager
def tracked_run(tracking: TrackingConfig, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED, FAILED on an exception, or KILLED on Ctrl-C."""
    from .sweep import PARENT_RUN_ENV

    use_experiment(tracking)
    parent_run_id = os.environ.get(PARENT_RUN_ENV)
    if parent_run_id:
        tags = {**tags, "sweep_job": str(sweep_job_number())}
    run = retry_locked(mlflow.start_run, run_name=tracking.run_name, tags={**tags, **tracking.tags},
                       parent_run_id=parent_run_id, log_system_metrics=tracking.log_system_metrics or None)
    try:
        yield run
    except KeyboardInterrupt:
        end_run(run, "KILLED")
        raise
    except BaseException:
        end_run(run, "FAILED")
        raise
    else:
        end_run(run, "FINISHED")


def end_run(run: mlflow.ActiveRun, status: str) -> None:
    """End the active run. `mlflow.end_run` forgets the run before it writes its status, so the
    status goes first, retried while SQLite is locked; a run is never left RUNNING by a lock."""
    try:
        retry_locked(mlflow.MlflowClient().set_terminated, run.info.run_id, status)
    finally:  # the next run of this process must not find this one still active
        retry_locked(mlflow.end_run, status)


def sweep_job_number() -> int | str:
    """The job number within a Hydra multirun ('' outside one)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().job.num if HydraConfig.initialized() else ""


def runs_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to look at a run: its URL for a server, else the `mlflow ui` command and URL."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}"
    if tracking_uri.startswith("http"):
        return f"{tracking_uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {tracking_uri}  ->  http://127.0.0.1:5000/{path}"


class MlflowMetrics(keras.callbacks.Callback):
    """Log every Keras metric and the learning rate once per epoch, with step=epoch."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from unetlab.callbacks import current_learning_rate

        metrics = {key: float(value) for key, value in (logs or {}).items()}
        metrics.setdefault("learning_rate", current_learning_rate(self.model))
        retry_locked(mlflow.log_metrics, metrics, step=epoch)
