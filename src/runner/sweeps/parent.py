"""The MLflow parent run of a sweep: one per `python -m runner -m ...`, with a nested child run
per job.

The parent's id reaches the jobs through the environment (`runner.tracking.PARENT_RUN_ENV`),
so jobs run by any launcher (in this process or in worker processes) nest under it; so do the
keys the sweep varies (`SWEEP_KEYS_ENV`), which each child shows in its name (`lr=0.001`). When the
sweep ends, `finish_sweep` ends the children their lost jobs left RUNNING, logs
`sweep_summary.csv` (job, status, the params that vary, the objective), tags the best child,
prints the table sorted by objective and closes the parent. The parent's name and tags hold
the command line with its passwords masked (`runner.redact`).

For grid sweeps the Hydra callback `MlflowSweep` (registered in conf/config.yaml) opens the
parent when the multirun starts; an Optuna search opens it itself once its search space and
study check out, so a mistake leaves no run behind.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..redact import install_log_filter, mask_secrets, masked, remember_env_secrets

log = logging.getLogger(__name__)

# The parent run this process opened. Imports stay lazy (runner.tracking loads Keras): Hydra
# instantiates the callback in every run, and `finish_sweep` runs on every error of the app.
_open_parent: str | None = None


class MlflowSweep(Callback):
    """Parent/child MLflow runs for Hydra multiruns."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from unetlab.distribution import tf_config_task
        from unetlab.errors import ConfigError

        if tf_config_task() is not None:  # every task would open its own parent and jobs
            raise ConfigError("TF_CONFIG names a cluster, which trains one run (trainer.distribution=data_parallel): "
                              "sweeps (-m) run on one machine; unset TF_CONFIG")
        install_log_filter()
        remember_env_secrets(config)
        if config.get("hparams_search") is None:  # a search opens the parent after its own checks
            open_parent(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_sweep()


def open_parent(config: DictConfig, resume: str | None = None) -> str:
    """Start the sweep's parent run (or reopen `resume`, the run an Optuna study was last run
    under, if it is in this tracking store) and hand its id to the jobs through the environment."""
    global _open_parent
    import mlflow
    from mlflow.exceptions import MlflowException

    from ..schema import MonitorMode, monitor_mode
    from ..tracking import PARENT_RUN_ENV, SWEEP_KEYS_ENV, retry_locked, use_experiment

    experiment_id = use_experiment(config.tracking)
    client = mlflow.MlflowClient()
    os.environ[SWEEP_KEYS_ENV] = ",".join(varying_keys(config))
    if resume:
        try:
            retry_locked(client.update_run, resume, "RUNNING")
            os.environ[PARENT_RUN_ENV] = _open_parent = resume
            log.info("sweep parent run %s (resumed with its study)", resume)
            return resume
        except MlflowException as error:
            log.info("the study's parent run %s is not in this tracking store (%s): starting a new one",
                     resume, error)
    overrides = mask_secrets(" ".join(OmegaConf.to_container(config.hydra.overrides.task)))  # as typed: unresolved
    monitor = config.trainer.monitor
    tags = {"sweep": "parent", "overrides": overrides, "sweep_objective": f"best_{monitor}",
            "sweep_direction": monitor_mode(monitor, MonitorMode(config.trainer.monitor_mode)),
            **masked(dict(config.tracking.tags), at="tracking.tags")}
    parent = retry_locked(client.create_run, experiment_id, tags=tags, run_name=f"sweep {overrides}"[:250])
    os.environ[PARENT_RUN_ENV] = _open_parent = parent.info.run_id
    log.info("sweep parent run %s", parent.info.run_id)
    return parent.info.run_id


def varying_keys(config: DictConfig) -> list[str]:
    """The config keys whose values differ between the sweep's jobs: the command line's sweeps
    (`optimizer.lr=0.001,0.01`) and a search's `hparams_search.params`, less those the command
    line fixes (a fixed value wins over a dimension, as in `space.search_space`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    search = config.get("hparams_search")
    keys = dict.fromkeys((search.get("params") or {}) if search else {})
    for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        key = override.get_key_element().lstrip("+~")
        if override.is_sweep_override():
            keys[key] = None
        else:
            keys.pop(key, None)
    return list(keys)


def log_to_parent(paths: list[Path], artifact_path: str, tags: dict[str, str]) -> None:
    """Log files and tags on the open parent run (nothing without one)."""
    if _open_parent is None:
        return
    import mlflow

    from ..tracking import retry_locked

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        retry_locked(client.set_tag, _open_parent, key, mask_secrets(value))
    for path in paths:
        retry_locked(client.log_artifact, _open_parent, str(path), artifact_path)


def finish_sweep(status: str = "FINISHED") -> None:
    """End the children left RUNNING (`end_running_children`), summarise them into the parent
    run this process opened and close it with `status`; nothing without one (outside a sweep,
    or once it is closed)."""
    global _open_parent
    parent_id, _open_parent = _open_parent, None
    if parent_id is None:
        return
    import mlflow

    from ..tracking import PARENT_RUN_ENV, SWEEP_KEYS_ENV, retry_locked

    os.environ.pop(PARENT_RUN_ENV, None)
    os.environ.pop(SWEEP_KEYS_ENV, None)

    client = mlflow.MlflowClient()
    try:
        end_running_children(client, parent_id, interrupted=status == "KILLED")
        summarise_children(client, parent_id)
    finally:
        retry_locked(client.set_terminated, parent_id, status)


def end_running_children(client, parent_id: str, interrupted: bool) -> None:
    """Once a sweep's jobs are over, a child run still RUNNING lost its job (a killed worker, a
    launcher that gave up, Ctrl-C): end it as `ended_status` says."""
    from ..tracking import retry_locked

    experiment_id = retry_locked(client.get_run, parent_id).info.experiment_id
    running = retry_locked(client.search_runs, [experiment_id],
                           f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'")
    for run in running:
        end_if_running(client, run.info.run_id, ended_status(interrupted, run.data.tags.get("optuna.state")),
                       "when its sweep ended")


def ended_status(interrupted: bool, optuna_state: str | None) -> str:
    """How a run its job left RUNNING ends: KILLED when it was stopped on purpose (the sweep
    interrupted, its trial set aside to run again, or pruned), FAILED when its job was lost."""
    return "KILLED" if interrupted or optuna_state == "PRUNED" else "FAILED"


def end_if_running(client, run_id: str, status: str, when: str) -> bool:
    """End `run_id` with `status` and tag it ended_by=sweep if it is still RUNNING, with one
    warning line; return whether it was."""
    from ..tracking import retry_locked

    run = retry_locked(client.get_run, run_id)
    if run.info.status != "RUNNING":
        return False
    retry_locked(client.set_tag, run_id, "ended_by", "sweep")
    retry_locked(client.set_terminated, run_id, status)
    log.warning("run %s (job %s) was still RUNNING %s: ended %s", run_id, run.data.tags.get("sweep_job", "?"),
                when, status)
    return True


def summarise_children(client, parent_id: str) -> None:
    """Log sweep_summary.csv, the best child and its objective on the parent; print the table."""
    import mlflow

    from ..tracking import retry_locked, runs_link

    parent = retry_locked(client.get_run, parent_id)
    children = retry_locked(mlflow.search_runs, [parent.info.experiment_id],
                            f"tags.mlflow.parentRunId = '{parent_id}'", output_format="pandas")
    objective, direction = parent.data.tags["sweep_objective"], parent.data.tags["sweep_direction"]
    table = summary_table(children, objective, direction)
    if table:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
        retry_locked(client.log_text, parent_id, buffer.getvalue(), "sweep_summary.csv")
    best = best_row(table, objective)
    if best is not None:
        retry_locked(client.set_tag, parent_id, "best_child_run_id", best["run_id"])
        retry_locked(client.log_metric, parent_id, objective, best[objective])
    log.info("sweep summary (%s, %s is better):\n%s", objective, "higher" if direction == "max" else "lower",
             format_rows(table))
    log.info("compare: %s", runs_link(client.tracking_uri, parent.info.experiment_id, parent_id))


def summary_table(children, objective: str, direction: str) -> list[dict[str, Any]]:
    """One row per child run of `children` (the DataFrame of `mlflow.search_runs`): job, run_id,
    status, the Optuna state (in a search), the params that differ between children (not
    output_dir, hparams_search settings or what a run fitted, `FITTED_PARAM_PREFIX`), the objective. Best objective first ('max' or 'min'
    `direction`), runs without one last."""
    from ..tracking import FITTED_PARAM_PREFIX

    records = [{key: None if _missing(value) else value for key, value in record.items()}
               for record in children.to_dict("records")]
    params = {column for column in children.columns if column.startswith("params.")}
    varying = sorted(column.removeprefix("params.") for column in params
                     if column != "params.output_dir" and not column.startswith(("params.hparams_search.",
                                                                                 f"params.{FITTED_PARAM_PREFIX}"))
                     and len({r[column] for r in records if r[column] is not None}) > 1)
    search = any(r.get("tags.optuna.state") is not None for r in records)
    table = [{"job": r.get("tags.sweep_job") or "", "run_id": r["run_id"], "status": r["status"],
              **({"state": r.get("tags.optuna.state") or ""} if search else {}),
              **{key: r[f"params.{key}"] for key in varying},
              objective: r.get(f"metrics.{objective}")} for r in records]
    scored = sorted((row for row in table if row[objective] is not None), key=lambda row: row[objective],
                    reverse=direction == "max")
    return scored + [row for row in table if row[objective] is None]


def best_row(table: list[dict[str, Any]], objective: str) -> dict[str, Any] | None:
    """The best scored row of a sorted summary, a complete trial in a search (not a pruned one)."""
    eligible = [row for row in table if row[objective] is not None and row.get("state", "COMPLETE") == "COMPLETE"]
    return eligible[0] if eligible else None


def format_rows(rows: list[dict]) -> str:
    if not rows:
        return "(no runs)"
    columns = [key for key in rows[0] if key != "run_id"] + ["run_id"]
    widths = {c: max(len(c), *(len(_text(row[c])) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(_text(row[c]).ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(lines)


def _text(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
