"""runner.sweeps.sweeper and plugin: how a trial's outcome is settled, and how Hydra finds the sweeper."""

import subprocess
import sys

import mlflow
import optuna
import pytest
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from runner.sweeps import sweeper
from hydra_plugins.unetlab_sweeper import register_sweeper
from runner.sweeps.sweeper import settle
from runner.sweeps.trial import OptunaJobTrial, TrialRecord, recorded

SPACE = {"model.filters": CategoricalDistribution([2, 4])}


def returned(value) -> JobReturn:
    return JobReturn(status=JobStatus.COMPLETED, _return_value=value)


def test_a_trial_whose_job_the_launcher_lost_is_settled_from_what_it_recorded():
    study = optuna.create_study(direction="maximize")
    finished, lost = study.ask(SPACE), study.ask(SPACE)
    OptunaJobTrial(finished).finished(0.7)  # it got to the end before the crash
    crash = RuntimeError("a worker process was killed")
    for trial in (finished, lost):
        settle(study, trial, crash, recorded(study.trials[trial.number].user_attrs))
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 0.7), (TrialState.FAIL, None)]


def test_a_job_that_returns_an_objective_completes_and_a_pruned_one_is_pruned():
    study = optuna.create_study(direction="maximize")
    complete, pruned = study.ask(SPACE), study.ask(SPACE)
    assert settle(study, complete, returned(0.6), TrialRecord(None, 0.6, None)) == "COMPLETE"
    assert settle(study, pruned, returned(0.4), TrialRecord(None, 0.4, 1)) == "PRUNED"
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 0.6), (TrialState.PRUNED, None)]


@pytest.mark.parametrize("result", [
    returned(float("nan")), returned(None), JobReturn(status=JobStatus.FAILED, _return_value=ValueError("boom"))])
def test_a_job_that_raises_or_returns_no_finite_objective_fails(result):
    study = optuna.create_study(direction="maximize")
    trial = study.ask(SPACE)
    assert settle(study, trial, result, TrialRecord(None, None, None)) == "FAIL"


def test_the_registered_sweeper_is_the_hydra_plugins_class_built_on_runners():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from hydra_plugins.unetlab_sweeper import OptunaSweeper

    register_sweeper()
    node = ConfigStore.instance().load("hydra/sweeper/unetlab_optuna.yaml").node
    assert node._target_ == "hydra_plugins.unetlab_sweeper.OptunaSweeper"
    assert issubclass(OptunaSweeper, sweeper.OptunaSweeper)
    assert OptunaSweeper in Plugins.instance().discover(Sweeper)


@pytest.mark.slow
def test_the_plugin_module_hydra_scans_at_every_start_imports_nothing_heavy():
    probe = ("import sys, hydra_plugins.unetlab_sweeper, runner.sweeps.trial, runner.sweeps.parent; "
             "print(sorted(m for m in ('optuna', 'mlflow', 'tensorflow', 'keras', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def mlflow_client(tmp_path):
    """A real MLflow SQLite store as the tracking URI, and the id of a sweep parent run in it."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = mlflow.MlflowClient()
    client.parent_id = client.create_run(client.create_experiment("unetlab")).info.run_id
    yield client
    mlflow.set_tracking_uri(previous)


def job_run(client) -> str:
    """A job's child run, left RUNNING (as when its worker dies)."""
    experiment_id = client.get_run(client.parent_id).info.experiment_id
    return client.create_run(experiment_id, tags={"mlflow.parentRunId": client.parent_id}).info.run_id


def test_the_runs_of_jobs_the_launcher_lost_end_failed_or_killed_if_pruned(mlflow_client, caplog):
    study = optuna.create_study(direction="maximize")
    trials = [study.ask(SPACE) for _ in range(3)]
    runs = [job_run(mlflow_client) for _ in trials]
    mlflow_client.set_terminated(runs[2], "FINISHED")  # its job ended its run before the launcher failed
    records = [TrialRecord(runs[0], None, None), TrialRecord(runs[1], 0.4, 1), TrialRecord(runs[2], None, None)]
    crash = RuntimeError("worker killed; storage postgresql://u:hunter2@h/db")
    for trial, record in zip(trials, records):
        settle(study, trial, crash, record, mlflow_client.parent_id)
    ended = [mlflow_client.get_run(run_id) for run_id in runs]
    assert [r.data.tags["optuna.state"] for r in ended] == ["FAIL", "PRUNED", "FAIL"]
    assert [r.info.status for r in ended] == ["FAILED", "KILLED", "FINISHED"]
    assert [r.data.tags.get("ended_by") for r in ended] == ["sweep", "sweep", None]
    assert ended[0].data.tags["error"] == "worker killed; storage postgresql://u:***@h/db"
    assert f"run {runs[0]} (job ?) was still RUNNING after trial 0 (FAIL): ended FAILED" in caplog.text
