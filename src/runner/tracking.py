"""MLflow: run lifecycle, params from the config, tags, and per-epoch metrics.

Everything a task writes to MLflow goes through here or through `mlflow.log_*` inside a
`tracked_run`; a sweep's jobs find their parent run through `PARENT_RUN_ENV`, and the keys the
sweep varies through `SWEEP_KEYS_ENV`. `run_name` names every run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import subprocess
import time
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

import keras
import mlflow
import yaml

from unetlab.errors import DataError

from .redact import mask_secrets, masked
from .schema import Config, TrackingConfig
from .settings import plain

log = logging.getLogger(__name__)

_RETRIES = 8
CHECKPOINTS = "checkpoints"  # a training run's checkpoints: the local folder and the artifact folder
CHECKPOINTS_DIR_TAG = "checkpoints_dir"  # where a training run writes them on its machine
PARENT_RUN_ENV = "UNETLAB_PARENT_RUN_ID"  # a sweep's parent run id, handed to its jobs (any launcher, any process)
SWEEP_KEYS_ENV = "UNETLAB_SWEEP_KEYS"  # the config keys a sweep varies (comma-separated), handed to its jobs
FITTED_PARAM_PREFIX = "decision_"  # params a run fitted after training (runner.decision_fit): results, not settings
TRAINING_VIEW = "workflowType=machine_learning"  # MLflow 3 UI: the model-training view, not the GenAI one
_NAME_LENGTH = 250  # MLflow's limit on a run name


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts -> {'model.filters': '32', ...}; lists and scalars become strings."""
    if isinstance(tree, dict):
        flat: dict[str, str] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    value = tree.value if isinstance(tree, Enum) else tree
    return {prefix[:-1]: str(value)}


def config_params(config: Config, only: tuple[str, ...] | None = None) -> dict[str, str]:
    """The config as MLflow params with dotted keys; `only`: just these keys and the keys under them
    (`"data"` takes `data.images`, ...). A search's space is left out: a trial's own values are its
    params, and the parent run holds the space (optuna/search_space.json)."""
    params = flatten(masked(plain(config)))
    return {key: value for key, value in params.items() if not key.startswith("hparams_search.params")
            and (only is None or any(key == name or key.startswith(f"{name}.") for name in only))}


def log_config(config: Config, params: bool = True) -> None:
    """The config as params (for comparing runs; MLflow keeps a run's first values) and as
    `config.yaml` (for reading, resuming and reproducing a run)."""
    if params:
        retry_locked(mlflow.log_params, config_params(config))
    mlflow.log_text(yaml.safe_dump(masked(plain(config)), sort_keys=False), "config.yaml")


def log_data(splits, fingerprint: str | None, images: str | None) -> None:
    """The split (file names per side), the dataset statistics and, for folder data, the
    content fingerprint as the run's MLflow dataset input."""
    if splits.train_files:
        mlflow.log_dict({"train": splits.train_files, "val": splits.val_files}, "data/split.json")
    if splits.preprocessing.mean is not None:
        mlflow.log_dict({"mean": splits.preprocessing.mean, "std": splits.preprocessing.std},
                        "data/statistics.json")
    if fingerprint and images:
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource

        # Named, not resolved from the path: MLflow registers two local sources ("" and file://
        # schemes), so resolving a path warns "can be interpreted in multiple ways".
        source = LocalArtifactDatasetSource(str(Path(images).resolve()))
        retry_locked(mlflow.log_input, MetaDataset(source=source, name=Path(images).name, digest=fingerprint),
                     context="training")


MODEL_SUMMARY = "model_summary.txt"  # the layer table: a training run's artifact, task=preview's file


def log_model_summary(model) -> None:
    """Keras' layer table as `model_summary.txt`, and the inference network's parameter count as metric `params`
    (sortable in the runs table; a metric, not a param: sweep summaries and `+from_run` list a run's params as its
    settings); with deep supervision, the training network's as metric `params_training`."""
    from unetlab.models import inference_model, layer_table

    mlflow.log_text(layer_table(model), MODEL_SUMMARY)
    counts = {"params": inference_model(model).count_params()}
    if counts["params"] != model.count_params():
        counts["params_training"] = model.count_params()
    retry_locked(mlflow.log_metrics, counts)


def source_tags() -> dict[str, str]:
    """The command-line overrides and the commit of the unetlab checkout (editable installs only)."""
    from hydra.core.hydra_config import HydraConfig

    from omegaconf import OmegaConf

    # Unresolved: an override's ${oc.env:...} stays a reference, not the secret it reads.
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return {"overrides": mask_secrets(" ".join(overrides)), **git_commit()}


def git_commit(source: Path = Path(__file__).resolve().parent) -> dict[str, str]:
    """Commit of the unetlab checkout `source` (the `src/runner` folder) was imported from (MLflow's
    own tag), with a dirty flag; none for an installed package, whose enclosing repository (a
    user's project around site-packages) is not unetlab's."""
    root = source.parents[1]
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=source, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        if Path(top).resolve() != root.resolve() or not is_unetlab_project(root / "pyproject.toml"):
            return {}
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit, "git_dirty": str(bool(dirty)).lower()}


def is_unetlab_project(pyproject: Path) -> bool:
    """Whether `pyproject` exists and its [project] is named unetlab."""
    try:
        text = pyproject.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    try:
        import tomllib
    except ImportError:  # Python 3.10: the name line under [project]
        import re

        return re.search(r'^\[project\][^\[]*^name\s*=\s*["\']unetlab["\']', text, re.M) is not None
    try:
        return tomllib.loads(text).get("project", {}).get("name") == "unetlab"
    except tomllib.TOMLDecodeError:
        return False


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
    if experiment.lifecycle_stage == "deleted":
        raise DataError(f"tracking.experiment={tracking.experiment} is deleted in tracking.uri={tracking.uri}: "
                        f"restore it (mlflow experiments restore --experiment-id {experiment.experiment_id}) "
                        "or name another")
    retry_locked(mlflow.set_experiment, experiment_id=experiment.experiment_id)
    return experiment.experiment_id


@contextlib.contextmanager
def tracked_run(tracking: TrackingConfig, tags: dict[str, str], resume: str | None = None, what: str | None = None,
                parent_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED, FAILED on an exception (its error as tag `error`), or
    KILLED on Ctrl-C or SIGTERM; tagged with `tags`, the command line and the source commit, and
    named by `run_name` (`what` it is: default its task). It is nested under `parent_run_id`, in
    that run's experiment, else under the sweep's parent run if any. `resume` continues that run
    (and its name) instead of a new one."""
    use_experiment(tracking)
    tags = {**source_tags(), **tags, **masked(dict(tracking.tags), at="tracking.tags")}
    if resume:
        run = retry_locked(mlflow.start_run, run_id=resume, tags=tags,
                           log_system_metrics=tracking.log_system_metrics or None)
    else:
        experiment_id = None
        if parent_run_id:
            experiment_id = retry_locked(mlflow.MlflowClient().get_run, parent_run_id).info.experiment_id
        else:
            parent_run_id = sweep_parent_run_id()
            if parent_run_id:
                tags["sweep_job"] = str(sweep_job_number())
        run = retry_locked(mlflow.start_run, run_name=run_name(tracking, what or tags.get("task", "run")), tags=tags,
                           parent_run_id=parent_run_id, experiment_id=experiment_id,
                           log_system_metrics=tracking.log_system_metrics or None)
    try:
        yield run
    except KeyboardInterrupt as error:
        end_run(run, "KILLED", {"interrupted": str(error) or "SIGINT"})
        raise
    except BaseException as error:
        end_run(run, "FAILED", {"error": mask_secrets(f"{type(error).__name__}: {error}")[:4000]})
        raise
    else:
        end_run(run, "FINISHED")


def training_name(config: Config) -> str:
    """What a training run is, for its name: model, depth, filters, loss, optimizer ('unet-d4-f32-bce_dice-adam')."""
    return f"{config.model.run_name()}-{config.loss.name}-{config.optimizer.name}"


def run_name(tracking: TrackingConfig, what: str) -> str:
    """A new run's name: `tracking.run_name` if set, else `what` the run is, the values this sweep
    job was given (`lr=0.001`) and 4 random hex digits ('unet-d4-f32-bce_dice-adam-lr=0.001-7f3a').
    The digits come from the OS, not from the generators the seed fixes (MLflow's own names are
    drawn after the seed is set, so runs with one seed all got the same one)."""
    if tracking.run_name:
        return tracking.run_name
    suffix = secrets.token_hex(2)
    return mask_secrets("-".join([what, *sweep_values()]))[: _NAME_LENGTH - len(suffix) - 1] + f"-{suffix}"


def sweep_values() -> list[str]:
    """'key=value' for each key the sweep varies (`SWEEP_KEYS_ENV`) that this job's overrides set,
    the key's last part where that is unambiguous; [] outside a sweep."""
    from hydra.core.hydra_config import HydraConfig

    keys = [key for key in os.environ.get(SWEEP_KEYS_ENV, "").split(",") if key]
    if not keys or not sweep_parent_run_id() or not HydraConfig.initialized():
        return []
    given = dict(override.split("=", 1) for override in HydraConfig.get().overrides.task if "=" in override)
    given = {key.lstrip("+~"): value for key, value in given.items()}
    lasts = [key.rsplit(".", 1)[-1] for key in keys]
    return [f"{last if lasts.count(last) == 1 else key}={_short(given[key])}"
            for key, last in zip(keys, lasts) if key in given]


def _short(value: str) -> str:
    """An override's value as a name shows it: unquoted, a float to 4 significant digits."""
    value = value.strip("'\"")
    try:
        number = float(value)
    except ValueError:
        return value[:40]
    return value if number.is_integer() and "." not in value else f"{number:.4g}"


def sweep_parent_run_id() -> str | None:
    """The MLflow parent run of the sweep this process runs jobs of (None outside a sweep)."""
    return os.environ.get(PARENT_RUN_ENV) or None


def end_run(run: mlflow.ActiveRun, status: str, tags: dict[str, str] | None = None) -> None:
    """End the active run (with `tags`, e.g. its error). `mlflow.end_run` forgets the run before it
    writes its status, so the status goes first, retried while SQLite is locked; a run is never
    left RUNNING by a lock, nor by a tag that cannot be written."""
    client = mlflow.MlflowClient()
    try:
        for key, value in (tags or {}).items():
            with contextlib.suppress(Exception):
                retry_locked(client.set_tag, run.info.run_id, key, value)
        retry_locked(client.set_terminated, run.info.run_id, status)
    finally:  # the next run of this process must not find this one still active
        retry_locked(mlflow.end_run, status)


def sweep_job_number() -> int | str:
    """The job number within a Hydra multirun ('' outside one)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().job.num if HydraConfig.initialized() else ""


def runs_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to look at a run: its URL for a server, else the `mlflow ui` command and URL; the UI
    opens in its model-training view (MLflow 3 reads `workflowType` from the query of the hash route)."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"
    if tracking_uri.startswith("http"):
        return f"{tracking_uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {tracking_uri}  ->  http://127.0.0.1:5000/{path}"


class MlflowMetrics(keras.callbacks.Callback):
    """Log every Keras metric and the learning rate once per epoch, with step=epoch.

    What `mlflow.keras.MlflowCallback` does per epoch, plus the learning rate and the retry on a
    locked SQLite store that parallel trials need; MLflow's also logs the optimizer's settings
    as params, which the config params already hold. Epochs in `logged_epochs` (logged before
    a resumed run's last checkpoint was written) are not logged twice."""

    def __init__(self, logged_epochs: frozenset = frozenset()):
        super().__init__()
        self.logged_epochs = logged_epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from unetlab.callbacks import current_learning_rate

        if epoch in self.logged_epochs:
            return
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        metrics.setdefault("learning_rate", current_learning_rate(self.model))
        retry_locked(mlflow.log_metrics, metrics, step=epoch)


def live_run(run_id: str, tracking_uri: str, key: str):
    """The MLflow run `run_id` that the config key `key` names; DataError if it is unknown or deleted."""
    try:
        run = mlflow.MlflowClient(tracking_uri).get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise DataError(f"{key}={run_id} is not a run in tracking.uri={tracking_uri}") from None
    if run.info.lifecycle_stage == "deleted":
        raise DataError(f"{key}={run_id} is a deleted run (mlflow runs restore --run-id {run_id} "
                        f"--backend-store-uri {tracking_uri} brings it back)")
    return run


def run_status(run_id: str) -> str:
    """FINISHED, RUNNING, FAILED or KILLED."""
    return retry_locked(mlflow.MlflowClient().get_run, run_id).info.status


def backend_params() -> dict[str, str]:
    """The param that names the engine under Keras: KERAS_BACKEND=tensorflow (the default) or jax.
    Training and evaluation runs log it: figures can differ slightly between backends."""
    return {"keras_backend": keras.backend.backend()}


def run_param(run_id: str, key: str) -> str | None:
    """The param `key` a run logged, or None."""
    return retry_locked(mlflow.MlflowClient().get_run, run_id).data.params.get(key)


def logged_epochs(run_id: str, metric: str) -> frozenset:
    """The epochs (steps) a run has already logged `metric` for."""
    history = retry_locked(mlflow.MlflowClient().get_metric_history, run_id, metric)
    return frozenset(entry.step for entry in history)


def delete_artifact(run_id: str, path: str) -> None:
    """Delete one artifact file of run `run_id` (local, mlflow-artifacts or S3 stores); a warning
    where the store cannot delete."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        get_artifact_repository(mlflow.get_run(run_id).info.artifact_uri).delete_artifacts(path)
    except Exception as error:  # noqa: BLE001 - the file only costs space
        log.warning("could not delete artifact %s of run %s: %s", path, run_id, error)


def artifact_uploader(run_id: str, artifact_path: str):
    """`upload(paths)` logging files to `artifact_path` of run `run_id`, from any thread."""
    client = mlflow.MlflowClient()

    def upload(paths) -> None:
        for path in paths:
            retry_locked(client.log_artifact, run_id, str(path), artifact_path)

    return upload
