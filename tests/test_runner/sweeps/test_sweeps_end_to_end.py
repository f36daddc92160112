"""Sweeps end to end: real Hydra multiruns training tiny models into real MLflow stores
(a SQLite file, and a real `mlflow server` over HTTP)."""

import json
import os
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
    seeded = optuna.create_study(study_name="seeded", storage=storage, direction="maximize")
    seeded.enqueue_trial({"optimizer.lr": -1.0, "model.filters": 2})  # the first trial raises: lr must be > 0
    named = [*SEARCH, "hparams_search.study_name=seeded"]

    first = run_runner("-m", *named, "trainer.epochs=3", "hparams_search.n_trials=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trial 0 failed" in first.stdout and "optimizer.lr must be > 0" in first.stdout
    # Same study, more trials, a pruner that prunes every trial after its second epoch.
    second = run_runner("-m", *named, "trainer.epochs=3", "hparams_search.n_trials=4",
                        "hparams_search.pruner.name=threshold", "hparams_search.pruner.lower=2.0",
                        "hparams_search.pruner.n_warmup_epochs=1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 of 4 trials finished, running 2" in second.stdout

    study = optuna.load_study(study_name="seeded", storage=storage)
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
    assert {"optuna/optimization_history.png", "optuna/intermediate_values.png", "optuna/trials.csv",
            "optuna/search_space.json"} <= artifacts
    space = json.loads(Path(client.download_artifacts(parents[0].info.run_id, "optuna/search_space.json")).read_text())
    assert set(space) == {"model.filters", "optimizer.lr"}
    assert not any(key.startswith("hparams_search.params") for key in complete.data.params)
    assert "optuna/param_importances.png" not in artifacts  # one complete trial: nothing to compare
    summary = Path(client.download_artifacts(parents[0].info.run_id, "sweep_summary.csv")).read_text()
    assert summary.splitlines()[0].startswith("job,run_id,status,state,")
    best = max(children[1:], key=lambda r: r.data.metrics["best_val_dice"])
    assert parents[0].data.tags["best_child_run_id"] == best.info.run_id


def test_four_parallel_trials_land_complete_in_one_sqlite_store(tmp_path):
    result = run_runner("-m", *SEARCH, "trainer.epochs=2", "hparams_search.n_trials=4", "hydra/launcher=joblib",
                        "hydra.launcher.n_jobs=4", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "running 4 (4 at a time)" in result.stdout

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path}/optuna.db")  # the only one
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parents, children = sweep_runs(client)
    assert len(parents) == 1 and len(children) == 4
    assert {r.info.status for r in parents + children} == {"FINISHED"}
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "optuna")}
    assert {"optuna/parallel_coordinate.png", "optuna/param_importances.png"} <= artifacts
    param_keys = {frozenset(c.data.params) for c in children}
    assert len(param_keys) == 1 and len(next(iter(param_keys))) > 50  # every job logged every param
    for run in children:
        trial = study.trials[int(run.data.tags["optuna.trial"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.metrics["best_val_dice"] == pytest.approx(trial.value)
        for key in ("loss", "val_loss", "val_dice", "learning_rate"):
            assert len(history(client, run, key)) == 2, key  # one value per epoch, none dropped
        assert run.data.params["model.filters"] == str(trial.params["model.filters"])


def test_a_grid_sweep_under_jax_nests_its_two_jobs_under_a_finished_parent(tmp_path):
    pytest.importorskip("jax")
    tiny = [o for o in TINY if not o.startswith(("model.filters=", "trainer.epochs=", "trainer.run_eagerly="))]
    result = run_runner("-m", "model.filters=2,4", *tiny, "trainer.epochs=1", cwd=tmp_path, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    parents, children = sweep_runs(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"))
    assert len(parents) == 1 and len(children) == 2
    assert {r.info.status for r in parents + children} == {"FINISHED"}
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert [(c.data.params["model.filters"], c.data.params["keras_backend"]) for c in children] == [
        ("2", "jax"), ("4", "jax")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on a free port of 127.0.0.1 with a SQLite backend and proxied artifacts."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/server.db",
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no GenAI job runner

    def wait_until_up(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.url
            except OSError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def booting_server(tmp_path_factory):
    """Started with the first test of this module: it boots (~20 s) while the other sweeps run."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server") / "server")
    yield server
    server.process.terminate()
    server.process.wait(timeout=30)


@pytest.fixture
def mlflow_server(booting_server) -> str:
    return booting_server.wait_until_up()


def test_grid_sweep_against_a_real_mlflow_server_nests_one_child_per_job_under_a_parent(tmp_path, mlflow_server):
    work = tmp_path / "work"  # launched from a directory of its own, logging over HTTP only
    work.mkdir()
    tiny = [o for o in TINY if not o.startswith("model.filters=")]
    result = run_runner("-m", "model.filters=2,4", "loss=dice,bce_dice", *tiny, f"tracking.uri={mlflow_server}",
                        cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (work / "mlflow.db").exists() and (work / "multirun").is_dir()

    client = MlflowClient(mlflow_server)
    parents, children = sweep_runs(client)
    assert len(parents) == 1 and len(children) == 4
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert {r.info.status for r in parents + children} == {"FINISHED"}
    assert [c.data.tags["sweep_job"] for c in children] == ["0", "1", "2", "3"]
    assert {(c.data.params["model.filters"], c.data.params["loss.name"]) for c in children} == {
        ("2", "dice"), ("2", "bce_dice"), ("4", "dice"), ("4", "bce_dice")}
    assert all("model.filters=" in c.data.tags["overrides"] for c in children)
    assert all(len(history(client, c, "val_dice")) == 2 for c in children)

    summary = Path(client.download_artifacts(parents[0].info.run_id, "sweep_summary.csv")).read_text().splitlines()
    assert summary[0].split(",") == ["job", "run_id", "status", "loss.name", "model.filters", "best_val_dice"]
    best = max(children, key=lambda r: r.data.metrics["best_val_dice"])
    assert parents[0].data.tags["best_child_run_id"] == best.info.run_id
    assert summary[1].split(",")[1] == best.info.run_id  # sorted by objective, best first
    assert parents[0].data.metrics["best_val_dice"] == pytest.approx(best.data.metrics["best_val_dice"])
    checkpoint = Path(client.download_artifacts(best.info.run_id, "checkpoints/best.keras"))  # proxied artifacts
    assert checkpoint.stat().st_size > 0


def test_a_search_stops_when_too_many_trials_fail_and_closes_its_parent_failed(tmp_path):
    # Every trial fails before training: depth 9 does not fit 32x32 images.
    result = run_runner("-m", *SEARCH, "trainer.epochs=2", "model.depth=9", "hparams_search.n_trials=4",
                        "hparams_search.max_failure_rate=0.25", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: hparams_search: 2 trials failed, more than max_failure_rate=0.25 of n_trials=4; "
        "stopping (errors above)")
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2  # the other two never ran
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parents, children = sweep_runs(client)
    assert [p.info.status for p in parents] == ["FAILED"]
    assert [c.info.status for c in children] == ["FAILED"] * 2
    assert all("data.image_size=32" in c.data.tags["error"] for c in children)
    assert (tmp_path / "multirun").is_dir() and list((tmp_path / "multirun").glob("*/*/optuna"))
