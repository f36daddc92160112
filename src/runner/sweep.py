"""Sweeps in MLflow: one parent run per `python -m runner -m ...`, one nested child run per job.

A Hydra callback (registered in conf/config.yaml) opens the parent run when the multirun
starts and hands its id to the jobs through the environment, so jobs run by any launcher
(in this process or in worker processes) nest under it. When the sweep ends it logs
`sweep_summary.csv` (job, status, the params that vary, the objective), tags the best child,
prints the table sorted by objective and closes the parent.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "UNETLAB_PARENT_RUN_ID"


class MlflowSweep(Callback):
    """Parent/child MLflow runs for Hydra multiruns."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.sweeper.get("_target_", "")).endswith(".OptunaSweeper"):
            return  # the Optuna sweeper opens the parent once the search space and study check out
        open_parent(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_sweep()


def open_parent(config: DictConfig, resume: str | None = None) -> str:
    """Start the sweep's parent run (or reopen `resume`, the run an Optuna study was last run
    under, if it is in this tracking store) and hand its id to the jobs through the environment."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from .schema import MonitorMode, monitor_mode
    from .tracking import retry_locked, use_experiment

    experiment_id = use_experiment(config.tracking)
    client = mlflow.MlflowClient()
    if resume:
        try:
            retry_locked(client.update_run, resume, "RUNNING")
            os.environ[PARENT_RUN_ENV] = resume
            log.info("sweep parent run %s (resumed with its study)", resume)
            return resume
        except MlflowException as error:
            log.info("the study's parent run %s is not in this tracking store (%s): starting a new one",
                     resume, error)
    overrides = " ".join(config.hydra.overrides.task)
    monitor = config.trainer.monitor
    tags = {"sweep": "parent", "overrides": overrides, "sweep_objective": f"best_{monitor}",
            "sweep_direction": monitor_mode(monitor, MonitorMode(config.trainer.monitor_mode)),
            **config.tracking.tags}
    parent = retry_locked(client.create_run, experiment_id, tags=tags, run_name=f"sweep {overrides}"[:250])
    os.environ[PARENT_RUN_ENV] = parent.info.run_id
    log.info("sweep parent run %s", parent.info.run_id)
    return parent.info.run_id


def finish_sweep(status: str = "FINISHED") -> None:
    """Summarise the children into the open parent run (if any) and close it with `status`."""
    import mlflow

    from .tracking import retry_locked

    parent_id = os.environ.pop(PARENT_RUN_ENV, None)
    if parent_id is None:
        return
    client = mlflow.MlflowClient()
    try:
        summarise_children(client, parent_id)
    finally:
        retry_locked(client.set_terminated, parent_id, status)


def summarise_children(client, parent_id: str) -> None:
    """Log sweep_summary.csv, the best child and its objective on the parent; print the table."""
    from .tracking import retry_locked, runs_link

    parent = retry_locked(client.get_run, parent_id)
    children = retry_locked(client.search_runs, [parent.info.experiment_id],
                            f"tags.mlflow.parentRunId = '{parent_id}'", max_results=10_000)
    objective, direction = parent.data.tags["sweep_objective"], parent.data.tags["sweep_direction"]
    table = summary_rows(children, objective)
    scored = [row for row in table if row[objective] is not None]
    scored.sort(key=lambda row: row[objective], reverse=direction == "max")
    table = scored + [row for row in table if row[objective] is None]
    if table:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
        retry_locked(client.log_text, parent_id, buffer.getvalue(), "sweep_summary.csv")
    eligible = [row for row in scored if row.get("state", "COMPLETE") == "COMPLETE"]  # not pruned trials
    if eligible:
        best = eligible[0]
        retry_locked(client.set_tag, parent_id, "best_child_run_id", best["run_id"])
        retry_locked(client.log_metric, parent_id, objective, best[objective])
    log.info("sweep summary (%s, %s is better):\n%s", objective, "higher" if direction == "max" else "lower",
             format_rows(table))
    log.info("compare: %s", runs_link(client.tracking_uri, parent.info.experiment_id, parent_id))


def summary_rows(children, objective: str) -> list[dict]:
    """One row per child: job, status (and Optuna state), the params that differ between
    children (not output_dir or hparams_search settings), the objective."""
    params = [child.data.params for child in children]
    varying = sorted({key for p in params for key in p
                      if key != "output_dir" and not key.startswith("hparams_search.")
                      and len({q[key] for q in params if key in q}) > 1})
    optuna = any("optuna.state" in child.data.tags for child in children)
    return [{"job": child.data.tags.get("sweep_job", ""), "run_id": child.info.run_id, "status": child.info.status,
             **({"state": child.data.tags.get("optuna.state", "")} if optuna else {}),
             **{key: child.data.params.get(key) for key in varying},
             objective: child.data.metrics.get(objective)} for child in children]


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
