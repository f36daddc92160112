"""Sweeps end to end, for safety: no password reaches MLflow, Optuna or the logs, and a sweep
killed mid-trial leaves no run RUNNING once the same command resumes it. Real Hydra multiruns
of tiny models into real SQLite stores."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from helpers import TINY, run_runner

pytestmark = pytest.mark.slow

SECRET = "hunter2"
SEARCH = [*(o for o in TINY if not o.startswith(("model.filters=", "trainer.epochs="))),
          "hparams_search=optuna", "hparams_search.params=null", "model.filters=2,4", "hparams_search.n_trials=1"]


def runs_of(client: MlflowClient):
    """The parent runs and the child runs of the `unetlab` experiment."""
    runs = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])
    return ([r for r in runs if r.data.tags.get("sweep") == "parent"],
            [r for r in runs if "mlflow.parentRunId" in r.data.tags])


def shown(run) -> str:
    """Everything MLflow shows of a run but its artifacts: name, tags, params."""
    return json.dumps([run.info.run_name, run.data.tags, run.data.params])


@pytest.fixture(scope="module")
def secret_sweep(tmp_path_factory):
    """A one-trial search whose command line holds a database password (in a tag, where it is
    harmless) and a tag read from an environment secret."""
    work = tmp_path_factory.mktemp("secret-sweep")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNETLAB_TEST_TOKEN", f"{SECRET}-token")
        result = run_runner("-m", *SEARCH, "trainer.epochs=1", f"+tracking.tags.db=postgresql://u:{SECRET}@h/db",
                            "+tracking.tags.token=${oc.env:UNETLAB_TEST_TOKEN}", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work, result, MlflowClient(f"sqlite:///{work}/mlflow.db")


def test_a_sweep_logs_and_records_no_secret_on_its_parent_and_study(secret_sweep):
    work, result, client = secret_sweep
    assert SECRET not in result.stdout + result.stderr
    logs = list(work.glob("multirun/**/*.log"))
    assert logs and not [log for log in logs if SECRET in log.read_text()]
    (parent,), _ = runs_of(client)
    assert SECRET not in shown(parent)
    assert "+tracking.tags.db=postgresql://u:***@h/db +tracking.tags.token=${oc.env:UNETLAB_TEST_TOKEN}" in (
        parent.data.tags["overrides"])  # as typed, its password masked
    assert parent.data.tags["db"] == "postgresql://u:***@h/db"
    assert parent.data.tags["token"] == "${oc.env:UNETLAB_TEST_TOKEN}"  # as written: not its value
    for name in ("optuna/trials.csv", "optuna/search_space.json", "sweep_summary.csv"):
        assert SECRET not in Path(client.download_artifacts(parent.info.run_id, name)).read_text(), name
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{work}/optuna.db")
    attrs = json.dumps([study.user_attrs, [t.user_attrs for t in study.trials]])
    assert SECRET not in attrs and "postgresql://u:***@h/db" in attrs


def test_a_sweep_records_no_secret_on_its_child_runs(secret_sweep):
    _, _, client = secret_sweep
    _, (child,) = runs_of(client)
    assert SECRET not in shown(child)
    assert SECRET not in Path(client.download_artifacts(child.info.run_id, "config.yaml")).read_text()


def wait_for_epoch(client_uri: str, process: subprocess.Popen, timeout: float = 240) -> None:
    """Until the sweep's child run has logged an epoch (the sweep must still be running)."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before its first epoch"
        try:
            client = MlflowClient(client_uri)
            _, children = runs_of(client)
            if children and "loss" in children[0].data.metrics:
                return
        except Exception:  # the store or the experiment is not there yet
            pass
        time.sleep(1)


HEARTBEAT = ["hparams_search.heartbeat_interval=1", "hparams_search.grace_period=2"]


def test_resuming_a_killed_sweep_ends_the_run_of_its_interrupted_trial_killed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    killed = subprocess.Popen([sys.executable, "-m", "runner", "-m", *SEARCH, *HEARTBEAT, "trainer.epochs=500"],
                              cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        wait_for_epoch(uri, killed)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # no handler runs: the trial and its run stay RUNNING
        killed.wait(timeout=60)
    client = MlflowClient(uri)
    (parent,), (left,) = runs_of(client)
    assert parent.info.status == left.info.status == "RUNNING"

    time.sleep(3.5)  # the killed sweep's heartbeat is older than grace_period=2: its trial is reclaimed
    resumed = run_runner("-m", *SEARCH, *HEARTBEAT, "trainer.epochs=1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run {left.info.run_id} (job 0) was still RUNNING after trial 0 (FAIL): ended KILLED" in resumed.stdout
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].params == study.trials[0].params  # the killed trial ran again
    (parent,), children = runs_of(client)
    statuses = {run.info.run_id: (run.info.status, run.data.tags.get("ended_by")) for run in children}
    assert statuses.pop(left.info.run_id) == ("KILLED", "sweep")
    assert list(statuses.values()) == [("FINISHED", None)] and parent.info.status == "FINISHED"
