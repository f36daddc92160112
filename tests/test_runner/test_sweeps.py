"""Optuna sweeps end to end: real Hydra multiruns training tiny models into real MLflow stores."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from helpers import TINY, run_runner

pytestmark = pytest.mark.slow

SEARCH = [*(o for o in TINY if not o.startswith(("model.filters=", "trainer.epochs="))),
          "hparams_search=optuna", "hparams_search.params=null", "model.filters=2,4",
          "optimizer.lr=interval(0.001, 0.01)", "hparams_search.max_failure_rate=0.5"]


def sweep_runs(client: MlflowClient):
    """The parent runs and the child runs of the `unetlab` experiment."""
    runs = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, sorted(children, key=lambda r: int(r.data.tags["sweep_job"]))


def history(client: MlflowClient, run, key: str) -> list[float]:
    return [m.value for m in client.get_metric_history(run.info.run_id, key)]


def test_optuna_search_records_a_failing_trial_prunes_and_resumes_under_one_parent(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    seeded = optuna.create_study(study_name="unetlab", storage=storage, direction="maximize")
    seeded.enqueue_trial({"optimizer.lr": -1.0, "model.filters": 2})  # the first trial raises: lr must be > 0

    first = run_runner("-m", *SEARCH, "trainer.epochs=3", "hparams_search.n_trials=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trial 0 failed" in first.stdout and "optimizer.lr must be > 0" in first.stdout
    # Same study, more trials, a pruner that prunes every trial after its second epoch.
    second = run_runner("-m", *SEARCH, "trainer.epochs=3", "hparams_search.n_trials=4",
                        "hparams_search.pruner.name=threshold", "hparams_search.pruner.lower=2.0",
                        "hparams_search.pruner.n_warmup_epochs=1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 of 4 trials finished, running 2" in second.stdout

    study = optuna.load_study(study_name="unetlab", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.PRUNED,
                                               TrialState.PRUNED]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parents, children = sweep_runs(client)
    assert len(parents) == 1 and len(children) == 4  # the resumed sweep went on under the same parent
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert {r.info.status for r in parents + children[1:]} == {"FINISHED"}  # nothing left RUNNING

    failed, complete, *pruned = children
    assert failed.info.status == "FAILED" and failed.data.tags["optuna.state"] == "FAIL"
    assert "optimizer.lr must be > 0" in failed.data.tags["error"]
    assert complete.data.tags["optuna.state"] == "COMPLETE" and len(history(client, complete, "val_dice")) == 3
    for run, trial in zip(pruned, study.trials[2:]):
        assert run.data.tags["optuna.state"] == "PRUNED" and run.data.tags["pruned"] == "true"
        assert len(history(client, run, "val_dice")) == 2  # stopped after epoch 2 of 3
        assert run.data.tags["optuna.trial"] == str(trial.number)
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert Path(client.download_artifacts(run.info.run_id, "checkpoints/best.keras")).is_file()

    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/parallel_coordinate.png", "optuna/trials.csv"} <= artifacts
    summary = Path(client.download_artifacts(parents[0].info.run_id, "sweep_summary.csv")).read_text()
    assert summary.splitlines()[0].startswith("job,run_id,status,state,")
    best = max(children[1:], key=lambda r: r.data.metrics["best_val_dice"])
    assert parents[0].data.tags["best_child_run_id"] == best.info.run_id


def test_four_parallel_trials_land_complete_in_one_sqlite_store(tmp_path):
    result = run_runner("-m", *SEARCH, "trainer.epochs=2", "hparams_search.n_trials=4", "hydra/launcher=joblib",
                        "hydra.launcher.n_jobs=4", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "running 4 (4 at a time)" in result.stdout

    study = optuna.load_study(study_name="unetlab", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parents, children = sweep_runs(client)
    assert len(parents) == 1 and len(children) == 4
    assert {r.info.status for r in parents + children} == {"FINISHED"}
    param_keys = {frozenset(c.data.params) for c in children}
    assert len(param_keys) == 1 and len(next(iter(param_keys))) > 50  # every job logged every param
    for run in children:
        trial = study.trials[int(run.data.tags["optuna.trial"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.metrics["best_val_dice"] == pytest.approx(trial.value)
        for key in ("loss", "val_loss", "val_dice", "learning_rate"):
            assert len(history(client, run, key)) == 2, key  # one value per epoch, none dropped
        assert run.data.params["model.filters"] == str(trial.params["model.filters"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on a free port of 127.0.0.1 with a SQLite backend and proxied artifacts."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_sweep_against_a_real_mlflow_server(tmp_path, mlflow_server):
    work = tmp_path / "work"
    work.mkdir()
    result = run_runner("-m", *SEARCH, "trainer.epochs=2", "hparams_search.n_trials=2",
                        f"tracking.uri={mlflow_server}", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (work / "mlflow.db").exists()  # everything went over HTTP

    client = MlflowClient(mlflow_server)
    parents, children = sweep_runs(client)
    assert len(parents) == 1 and len(children) == 2
    assert {r.info.status for r in parents + children} == {"FINISHED"}
    assert {c.data.tags["optuna.state"] for c in children} == {"COMPLETE"}
    assert all(len(history(client, c, "val_dice")) == 2 for c in children)
    assert "sweep_summary.csv" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert "optuna/optimization_history.png" in {a.path for a in client.list_artifacts(parents[0].info.run_id,
                                                                                        "optuna")}
    best = Path(client.download_artifacts(children[0].info.run_id, "checkpoints/best.keras"))
    assert best.stat().st_size > 0
