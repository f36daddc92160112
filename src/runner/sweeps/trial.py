"""The trial protocol: what a job of an Optuna sweep records on its trial, and how the sweeper
reads it back. The names it uses (trial user attrs, the `hparams_search.trial_id` override,
the tags and metric of a pruned run) appear in this module only.

- The sweeper launches a trial's job with `job_override(trial)`.
- The train task calls `job_trial(config)`, then `.tags()`, `.callbacks(monitor)`,
  `.started(run_id)` and `.finished(objective)`: a no-op outside an Optuna sweep.
- The sweeper reads the trial's record with `recorded(user_attrs)`: the job's MLflow run, its
  objective (for when a launcher loses the job's return value) and the epoch it was pruned at.

Imports stay lazy: the sweeper imports this module at the start of a sweep.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, NamedTuple

log = logging.getLogger(__name__)

_MLFLOW_RUN_ID = "mlflow_run_id"  # trial user attr: the job's MLflow run
_OBJECTIVE = "objective"  # trial user attr: the value the job returns
_PRUNED_AT_EPOCH = "pruned_at_epoch"  # trial user attr, and MLflow metric of the pruned run (from 0)


class TrialRecord(NamedTuple):
    """What a job recorded on its trial (None where it recorded nothing)."""

    run_id: str | None
    objective: Any
    pruned_at_epoch: int | None


def recorded(user_attrs: Mapping[str, Any]) -> TrialRecord:
    """The record a job left in its trial's user attrs."""
    return TrialRecord(user_attrs.get(_MLFLOW_RUN_ID), user_attrs.get(_OBJECTIVE), user_attrs.get(_PRUNED_AT_EPOCH))


def job_override(trial) -> str:
    """The override that tells a job which trial of the study it runs (read by `job_trial`)."""
    return f"hparams_search.trial_id={trial._trial_id}"


class JobTrial:
    """The trial a job runs: outside an Optuna sweep, nothing to tag, report or record."""

    def tags(self) -> dict[str, str]:
        return {}

    def callbacks(self, monitor: str) -> list:
        return []

    def started(self, run_id: str) -> None:
        pass

    def finished(self, objective: float) -> None:
        pass


class OptunaJobTrial(JobTrial):
    """A job's Optuna trial: its run is tagged with the study and trial, reports `monitor` every
    epoch (and stops when pruned), and records its run and outcome on the trial."""

    def __init__(self, trial) -> None:
        self.trial = trial
        self.pruning = None

    def tags(self) -> dict[str, str]:
        return {"optuna.study": self.trial.study.study_name, "optuna.trial": str(self.trial.number)}

    def callbacks(self, monitor: str) -> list:
        from .pruning import TrialPruning

        self.pruning = TrialPruning(self.trial, monitor)
        return [self.pruning]

    def started(self, run_id: str) -> None:
        """Record the job's MLflow run on the trial (the sweeper tags it with the trial's state)."""
        from ..tracking import retry_locked

        retry_locked(self.trial.set_user_attr, _MLFLOW_RUN_ID, run_id)

    def finished(self, objective: float) -> None:
        """Record the objective on the trial; a pruned trial also marks its (active) MLflow run
        with tag pruned=true and metric pruned_at_epoch."""
        import mlflow

        from ..tracking import retry_locked

        epoch = self.pruning.pruned_epoch if self.pruning is not None else None
        if epoch is not None:
            retry_locked(mlflow.set_tag, "pruned", "true")
            retry_locked(mlflow.log_metric, _PRUNED_AT_EPOCH, epoch)
            retry_locked(self.trial.set_user_attr, _PRUNED_AT_EPOCH, epoch)
        retry_locked(self.trial.set_user_attr, _OBJECTIVE, float(objective))


def job_trial(config) -> JobTrial:
    """The trial this job runs (`config` is the job's `runner.schema.Config`): a no-op outside
    an Optuna sweep (`app` refuses `hparams_search` in a single run before any task starts)."""
    search = config.hparams_search
    if search is None or search.trial_id is None:
        return JobTrial()
    import optuna

    from .study import find_study

    study = find_study(search)
    if study is None:
        log.warning("trial %d: study %r is in another process's memory; pruning is off "
                    "(set hparams_search.storage)", search.trial_id, search.study_name)
        return JobTrial()
    return OptunaJobTrial(optuna.trial.Trial(study, search.trial_id))
