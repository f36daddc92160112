"""The Optuna sweeper behind `python -m runner -m hparams_search=optuna`.

Written on Hydra's public Sweeper API because the `hydra-optuna-sweeper` package pins
optuna<3, cannot resume a SQLite study with SQLAlchemy 2 and has no pruning. It asks the
study for `n_jobs` trials at a time, launches them as Hydra jobs with whatever launcher is
configured (basic, joblib, ray), and tells the study how each one ended: complete, pruned or
failed. Hydra instantiates it as `hydra_plugins.unetlab_sweeper.OptunaSweeper`, and Hydra's
plugin scan imports that module at every start: imports here stay lazy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    """Run the Optuna study of `hparams_search` as Hydra jobs, one per trial."""

    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.launcher: Optional[Launcher] = None
        self.hydra_context: Optional[HydraContext] = None
        self.parent_run_id: Optional[str] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        import optuna

        from unetlab.errors import UnetlabError

        from ..redact import install_log_filter, remember_env_secrets
        from .parent import log_to_parent, open_parent
        from .space import sample_overrides, search_space
        from .study import (check_same_settings, check_same_space, failed_trials, heartbeat, open_study,
                            parent_run_id, reclaim_stale_trials, set_parent_run_id, study_name, trials_to_run)

        install_log_filter()
        remember_env_secrets(self.config)
        # Mistakes surface before anything is recorded: settings, space syntax, keys and group options.
        settings, direction = self._settings()
        space, fixed = search_space(settings.params, arguments)
        self.validate_batch_is_legal([[*fixed, *sample] for sample in sample_overrides(space)])
        settings = replace(settings, study_name=study_name(settings, self.config.tracking.experiment, space,
                                                           direction, self.config.trainer.monitor))
        study = open_study(settings, direction)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # we log each trial ourselves
        check_same_space(study, space)
        check_same_settings(study, fixed)
        self.parent_run_id = open_parent(self.config, resume=parent_run_id(study))
        set_parent_run_id(study, self.parent_run_id)
        log_to_parent([], "optuna", {"optuna.study": study.study_name})
        self._record_set_aside(study, reclaim_stale_trials(settings, study))  # left RUNNING by a dead sweep
        remaining = trials_to_run(study, settings.n_trials)
        n_jobs = settings.n_jobs or self._launcher_jobs()
        log.info("%d of %d trials finished, running %d (%d at a time); search space: %s",
                 settings.n_trials - remaining, settings.n_trials, remaining, n_jobs, ", ".join(space) or "(empty)")
        try:
            while remaining > 0:
                trials = [study.ask(space) for _ in range(min(n_jobs, remaining))]
                with heartbeat(settings, trials):  # so that another sweep on the study leaves them alone
                    self._run_batch(study, trials, fixed)
                remaining -= len(trials)
                failed = failed_trials(study)
                if failed > settings.max_failure_rate * settings.n_trials:
                    raise UnetlabError(
                        f"hparams_search: {failed} trials failed, more than max_failure_rate="
                        f"{settings.max_failure_rate} of n_trials={settings.n_trials}; stopping (errors above)")
        finally:
            self._report(study)
        return study

    def _settings(self):
        """hparams_search as a checked SearchConfig, and the study direction from trainer.monitor."""
        from omegaconf import OmegaConf

        from unetlab.errors import ConfigError

        from ..schema import MonitorMode, monitor_mode
        from ..settings import checked

        config = self.config
        settings = checked(lambda: OmegaConf.to_object(config.hparams_search))
        if settings.storage is None and not str(config.hydra.launcher._target_).endswith("BasicLauncher"):
            raise ConfigError("hparams_search.storage=null keeps the study in this process's memory, which the "
                              "jobs of hydra/launcher cannot reach: set hparams_search.storage=sqlite:///optuna.db")
        mode = monitor_mode(config.trainer.monitor, MonitorMode(config.trainer.monitor_mode))
        return settings, "maximize" if mode == "max" else "minimize"

    def _launcher_jobs(self) -> int:
        """How many jobs the launcher runs at once (joblib's n_jobs; 1 for the basic launcher)."""
        n_jobs = self.config.hydra.launcher.get("n_jobs")
        if isinstance(n_jobs, int) and n_jobs < 0:  # joblib: -1 = all cores, -2 = all but one...
            return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
        return n_jobs if isinstance(n_jobs, int) and n_jobs > 0 else 1

    def _run_batch(self, study, trials, fixed: List[str]) -> None:
        """Launch one job per trial and tell the study how each ended."""
        from .space import override_value, trial_overrides
        from .trial import job_override, recorded

        name = f"hparams_search.study_name={override_value(study.study_name)}"  # the jobs' study, named or not
        batch = [[*fixed, *trial_overrides(t), name, job_override(t)] for t in trials]
        try:
            self.validate_batch_is_legal(batch)  # e.g. a search-space key that is not in the config
        except Exception:
            self._set_aside(study, trials, again=False)
            raise
        try:
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
        except KeyboardInterrupt:
            self._set_aside(study, trials, again=True)  # the same command runs them again
            raise
        except Exception as error:  # a launcher failure, e.g. a worker process killed for memory
            log.error("the launcher failed (%s): trials %s are settled from what they recorded",
                      error, ", ".join(str(t.number) for t in trials))
            results = [error] * len(trials)
        frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
        for trial, result in zip(trials, results):
            settle(study, trial, result, recorded(frozen[trial.number].user_attrs), self.parent_run_id)

    def _set_aside(self, study, trials, *, again: bool) -> None:
        """`study.set_aside`, then `_record_set_aside`."""
        from .study import set_aside

        set_aside(study, trials, again=again)
        self._record_set_aside(study, trials)

    def _record_set_aside(self, study, trials) -> None:
        """Each set-aside trial's run says what the study recorded (FAIL), and ends KILLED if its
        job (interrupted, or run by a sweep that died) left it RUNNING."""
        from .trial import recorded

        frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
        for trial in trials:
            try:
                record_in_mlflow(trial, "FAIL", recorded(frozen[trial.number].user_attrs).run_id, None,
                                 self.parent_run_id, interrupted=True)
            except Exception as error:
                log.warning("trial %d: could not tag its run: %s", trial.number, error)

    def _report(self, study) -> None:
        """Plots and the trial table in the sweep directory and on the parent run; the best trial.
        Never raises: a sweep's own error (or Ctrl-C) must not be hidden by a failed picture."""
        from .parent import log_to_parent
        from .report import describe_best, write_report

        try:
            paths = write_report(study, Path(str(self.config.hydra.sweep.dir)) / "optuna")
            log.info("study %r: %s", study.study_name, describe_best(study))
            log_to_parent(paths, "optuna", {})
        except Exception as error:
            log.warning("could not write the study's plots and table: %s", error)


def settle(study, trial, result, record, parent_run_id: Optional[str] = None) -> str:
    """Record one job's outcome in the study and on its MLflow run; return the trial's state.
    `result` is the job's JobReturn, or the launcher's exception when there is none (then what
    the trial recorded, `record` from `trial.recorded`, counts)."""
    from optuna.trial import TrialState

    from unetlab.errors import UnetlabError

    from ..tracking import retry_locked
    from .space import trial_overrides

    if isinstance(result, Exception):  # the launcher lost the job's return: use what the trial recorded
        returned, error = record.objective, result
    else:
        try:
            returned, error = result.return_value, None
        except Exception as raised:  # the job's own exception, re-raised by JobReturn
            returned, error = None, raised
    value = objective_value(returned)
    if value is not None:
        error = None
    elif error is None:
        error = ValueError(f"the job returned {returned!r}, not a finite objective")
    if error is not None:
        state = retry_locked(study.tell, trial, state=TrialState.FAIL).state.name
        log.error("trial %d failed (%s): %s", trial.number, " ".join(trial_overrides(trial)), error,
                  exc_info=None if isinstance(error, UnetlabError) else error)
    elif record.pruned_at_epoch is not None:
        state = retry_locked(study.tell, trial, state=TrialState.PRUNED).state.name
        log.info("trial %d pruned after epoch %d: %.4f", trial.number, record.pruned_at_epoch + 1, value)
    else:
        state = retry_locked(study.tell, trial, value).state.name
        log.info("trial %d complete: %.4f", trial.number, value)
    record_in_mlflow(trial, state, record.run_id, error, parent_run_id)
    return state


def objective_value(value: Any) -> Optional[float]:
    """A job's return value as an objective (None when missing or not finite)."""
    import math

    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def record_in_mlflow(trial, state: str, run_id: Optional[str], error: Optional[BaseException],
                     parent_run_id: Optional[str], interrupted: bool = False) -> None:
    """Tag the trial's run with its Optuna state, and end it if its job left it RUNNING (KILLED
    when `interrupted` or pruned, FAILED when the job was lost); a trial that failed before its
    run started gets a FAILED child run of `parent_run_id` of its own, so the sweep's runs show
    every trial."""
    if not run_id and (not parent_run_id or error is None):
        return
    import mlflow

    from ..redact import mask_secrets
    from ..tracking import retry_locked
    from .parent import end_if_running, ended_status
    from .space import trial_overrides

    client = mlflow.MlflowClient()
    message = mask_secrets(str(error))[:5000]
    if run_id:
        retry_locked(client.set_tag, run_id, "optuna.state", state)
        if error is not None:
            retry_locked(client.set_tag, run_id, "error", message)
        end_if_running(client, run_id, ended_status(interrupted, state), f"after trial {trial.number} ({state})")
        return
    experiment_id = retry_locked(client.get_run, parent_run_id).info.experiment_id
    overrides = mask_secrets(" ".join(trial_overrides(trial)))
    run = retry_locked(client.create_run, experiment_id, run_name=f"trial {trial.number} (failed)", tags={
        "mlflow.parentRunId": parent_run_id, "sweep_job": str(trial.number), "overrides": overrides,
        "optuna.trial": str(trial.number), "optuna.state": state, "error": message})
    for key, value in trial.params.items():
        retry_locked(client.log_param, run.info.run_id, key, value)
    retry_locked(client.set_terminated, run.info.run_id, "FAILED")
