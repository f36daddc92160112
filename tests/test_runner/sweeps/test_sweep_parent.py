"""runner.sweeps.parent: a sweep's MLflow parent run and its summary, built from real child
runs in a SQLite store."""

import csv
import io
import sqlite3
import threading
from pathlib import Path

import mlflow
import pytest
from hydra import compose as hydra_compose
from mlflow import MlflowClient
from omegaconf import OmegaConf

from runner.redact import remember_env_secrets
from runner.sweeps.parent import MlflowSweep, finish_sweep, log_to_parent, summarise_children, summary_table
from runner.tracking import PARENT_RUN_ENV, retry_locked, sweep_parent_run_id


@pytest.fixture
def client(tmp_path, monkeypatch):
    """An MLflow SQLite store under tmp_path, as the tracking URI; no sweep parent in the environment."""
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    yield MlflowClient(uri)
    mlflow.set_tracking_uri(previous)


def make_sweep(client, objective: str, direction: str, children: list[dict]) -> str:
    """A parent run and one finished child per entry: {params, metrics, tags, status}."""
    experiment_id = client.create_experiment("unetlab")
    parent_id = client.create_run(experiment_id, tags={"sweep": "parent", "sweep_objective": objective,
                                                       "sweep_direction": direction}).info.run_id
    for job, child in enumerate(children):
        run_id = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id, "sweep_job": str(job),
                                                        **child.get("tags", {})}).info.run_id
        for key, value in child.get("params", {}).items():
            client.log_param(run_id, key, value)
        for key, value in child.get("metrics", {}).items():
            client.log_metric(run_id, key, value)
        client.set_terminated(run_id, child.get("status", "FINISHED"))
    return parent_id


def children_of(parent_id: str):
    experiment_id = mlflow.get_run(parent_id).info.experiment_id
    return mlflow.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", output_format="pandas")


def logged_summary(client, parent_id: str) -> list[dict]:
    text = Path(client.download_artifacts(parent_id, "sweep_summary.csv")).read_text()
    return list(csv.DictReader(io.StringIO(text)))


def grid(**metrics_by_filters):
    """Children of a grid over model.filters (loss fixed; output_dir and hparams_search.* vary but are
    not compared), with best_val_dice per child (None: no metric, as for a failed run)."""
    return [{"params": {"model.filters": filters, "loss.name": "dice", "output_dir": f"out/{job}",
                        "hparams_search.seed": str(job)},
             "metrics": {} if value is None else {"best_val_dice": value, "val_dice": value - 0.1},
             "status": "FAILED" if value is None else "FINISHED"}
            for job, (filters, value) in enumerate(metrics_by_filters.items())]


def test_the_summary_lists_the_params_that_vary_best_first_and_runs_without_an_objective_last(client):
    parent_id = make_sweep(client, "best_val_dice", "max", grid(**{"2": 0.5, "4": None, "8": 0.8}))
    table = summary_table(children_of(parent_id), "best_val_dice", "max")
    assert [list(row) for row in table] == [["job", "run_id", "status", "model.filters", "best_val_dice"]] * 3
    assert [(row["job"], row["status"], row["model.filters"], row["best_val_dice"]) for row in table] == [
        ("2", "FINISHED", "8", 0.8), ("0", "FINISHED", "2", 0.5), ("1", "FAILED", "4", None)]


def test_a_lower_is_better_objective_sorts_the_other_way(client):
    children = [{"params": {"optimizer.lr": lr}, "metrics": {"best_val_loss": loss}}
                for lr, loss in (("0.01", 0.3), ("0.001", 0.1), ("0.1", 0.9))]
    parent_id = make_sweep(client, "best_val_loss", "min", children)
    table = summary_table(children_of(parent_id), "best_val_loss", "min")
    assert [(row["optimizer.lr"], row["best_val_loss"]) for row in table] == [
        ("0.001", 0.1), ("0.01", 0.3), ("0.1", 0.9)]


def test_the_parent_gets_the_summary_csv_the_best_child_and_its_objective(client, caplog):
    parent_id = make_sweep(client, "best_val_dice", "max", grid(**{"2": 0.5, "4": None, "8": 0.8}))
    caplog.set_level("INFO")
    summarise_children(client, parent_id)
    rows = logged_summary(client, parent_id)
    assert list(rows[0]) == ["job", "run_id", "status", "model.filters", "best_val_dice"]
    assert [(row["model.filters"], row["best_val_dice"]) for row in rows] == [("8", "0.8"), ("2", "0.5"), ("4", "")]
    parent = client.get_run(parent_id)
    assert parent.data.tags["best_child_run_id"] == rows[0]["run_id"]
    assert parent.data.metrics["best_val_dice"] == pytest.approx(0.8)
    assert "sweep summary (best_val_dice, higher is better):" in caplog.text
    assert "0.8000" in caplog.text and "compare: mlflow ui --backend-store-uri" in caplog.text


def test_a_pruned_trial_is_listed_with_its_state_but_never_chosen_as_best(client):
    children = [{"params": {"model.filters": filters}, "metrics": {"best_val_dice": value},
                 "tags": {"optuna.state": state}}
                for filters, value, state in (("2", 0.6, "COMPLETE"), ("4", 0.9, "PRUNED"), ("8", 0.4, "COMPLETE"))]
    parent_id = make_sweep(client, "best_val_dice", "max", children)
    summarise_children(client, parent_id)
    rows = logged_summary(client, parent_id)
    assert list(rows[0]) == ["job", "run_id", "status", "state", "model.filters", "best_val_dice"]
    assert [(row["state"], row["model.filters"]) for row in rows] == [
        ("PRUNED", "4"), ("COMPLETE", "2"), ("COMPLETE", "8")]  # sorted by objective, pruned or not
    parent = client.get_run(parent_id)
    assert parent.data.tags["best_child_run_id"] == rows[1]["run_id"]
    assert parent.data.metrics["best_val_dice"] == pytest.approx(0.6)


def test_a_sweep_without_scored_children_has_no_best_child(client):
    parent_id = make_sweep(client, "best_val_dice", "max", grid(**{"2": None}))
    summarise_children(client, parent_id)
    assert [row["best_val_dice"] for row in logged_summary(client, parent_id)] == [""]
    assert "best_child_run_id" not in client.get_run(parent_id).data.tags


def test_a_sweep_without_child_runs_logs_no_table(client, caplog):
    parent_id = make_sweep(client, "best_val_dice", "max", [])
    caplog.set_level("INFO")
    summarise_children(client, parent_id)
    assert client.list_artifacts(parent_id) == [] and "(no runs)" in caplog.text


def sweep_config(tmp_path, *overrides):
    """The composed config a Hydra multirun hands its callbacks (with its `hydra` node)."""
    return hydra_compose("config", overrides=[f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", *overrides],
                         return_hydra_config=True)


def test_a_grid_sweep_opens_a_parent_that_finish_sweep_summarises_and_closes(compose, client, tmp_path):
    callback = MlflowSweep()
    config = sweep_config(tmp_path, "model.filters=2")
    callback.on_multirun_start(config)
    parent_id = sweep_parent_run_id()
    assert parent_id is not None
    parent = client.get_run(parent_id)
    assert parent.info.status == "RUNNING" and parent.data.tags["sweep"] == "parent"
    assert parent.data.tags["sweep_objective"] == "best_val_dice" and parent.data.tags["sweep_direction"] == "max"
    assert parent.data.tags["overrides"] == f"tracking.uri=sqlite:///{tmp_path}/mlflow.db model.filters=2"
    callback.on_multirun_end(config)
    assert sweep_parent_run_id() is None and client.get_run(parent_id).info.status == "FINISHED"


def test_a_search_leaves_the_parent_to_its_sweeper(compose, client, tmp_path):
    MlflowSweep().on_multirun_start(sweep_config(tmp_path, "hparams_search=optuna"))
    assert sweep_parent_run_id() is None
    finish_sweep("FAILED")  # no open parent: nothing to do
    assert client.search_experiments(filter_string="name = 'unetlab'") == []


def test_a_sweep_that_stops_early_closes_its_parent_with_that_status(compose, client, tmp_path):
    MlflowSweep().on_multirun_start(sweep_config(tmp_path))
    parent_id = sweep_parent_run_id()
    finish_sweep("KILLED")
    assert client.get_run(parent_id).info.status == "KILLED"


@pytest.mark.slow
def test_retry_locked_outlasts_a_locked_sqlite_store(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("locks")).info.run_id
    holder = sqlite3.connect(tmp_path / "mlflow.db", check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the store for 22 s
    threading.Timer(22.0, holder.rollback).start()
    with pytest.raises(Exception, match="database is locked"):
        client.log_metric(run_id, "dice", 0.5)  # MLflow's own wait (20 s) runs out
    retry_locked(client.log_metric, run_id, "dice", 0.7)
    assert [m.value for m in client.get_metric_history(run_id, "dice")] == [0.7]


def open_sweep_with_children(tmp_path, client, *children: dict) -> tuple[str, list[str]]:
    """A grid sweep's parent opened by MlflowSweep, and a child run per entry {status, tags}:
    status RUNNING leaves it running, as a job lost with its worker does."""
    MlflowSweep().on_multirun_start(sweep_config(tmp_path))
    parent_id = sweep_parent_run_id()
    experiment_id = client.get_run(parent_id).info.experiment_id
    run_ids = []
    for job, child in enumerate(children):
        run_id = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id, "sweep_job": str(job),
                                                        **child.get("tags", {})}).info.run_id
        if child["status"] != "RUNNING":
            client.set_terminated(run_id, child["status"])
        run_ids.append(run_id)
    return parent_id, run_ids


def test_finish_sweep_ends_the_children_their_lost_jobs_left_running(compose, client, tmp_path, caplog):
    parent_id, (lost, pruned, finished) = open_sweep_with_children(
        tmp_path, client, {"status": "RUNNING"}, {"status": "RUNNING", "tags": {"optuna.state": "PRUNED"}},
        {"status": "FINISHED"})
    finish_sweep("FAILED")
    runs = {run_id: client.get_run(run_id) for run_id in (lost, pruned, finished)}
    assert [runs[r].info.status for r in (lost, pruned, finished)] == ["FAILED", "KILLED", "FINISHED"]
    assert [runs[r].data.tags.get("ended_by") for r in (lost, pruned, finished)] == ["sweep", "sweep", None]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and f"run {lost} (job 0) was still RUNNING when its sweep ended: ended FAILED" in warnings
    assert {row["job"]: row["status"] for row in logged_summary(client, parent_id)} == {
        "0": "FAILED", "1": "KILLED", "2": "FINISHED"}  # the summary shows how they ended
    assert client.get_run(parent_id).info.status == "FAILED"


def test_an_interrupted_sweep_ends_its_running_children_killed(compose, client, tmp_path):
    parent_id, run_ids = open_sweep_with_children(tmp_path, client, {"status": "RUNNING"}, {"status": "RUNNING"})
    finish_sweep("KILLED")
    assert [client.get_run(r).info.status for r in [parent_id, *run_ids]] == ["KILLED"] * 3


@pytest.fixture
def env_secrets_forgotten():
    yield
    remember_env_secrets(OmegaConf.create({}))  # the next tests' texts are not masked by this one's secrets


def test_the_parent_run_shows_no_password_nor_environment_secret(compose, client, tmp_path, monkeypatch,
                                                                  env_secrets_forgotten):
    monkeypatch.setenv("UNETLAB_TEST_TOKEN", "hunter2-token")
    config = sweep_config(tmp_path, "+tracking.tags.db=postgresql://u:hunter2@h/db",
                          "+tracking.tags.token=${oc.env:UNETLAB_TEST_TOKEN}")
    MlflowSweep().on_multirun_start(config)
    parent_id = sweep_parent_run_id()
    log_to_parent([], "optuna", {"note": "storage mysql://u:hunter2@h/optuna"})
    parent = client.get_run(parent_id)
    assert "hunter2" not in parent.info.run_name and "postgresql://u:***@h/db" in parent.info.run_name
    assert not [key for key, value in parent.data.tags.items() if "hunter2" in value]
    assert parent.data.tags["db"] == "postgresql://u:***@h/db"
    assert parent.data.tags["token"] == "${oc.env:UNETLAB_TEST_TOKEN}"  # as written: not its value
    assert parent.data.tags["note"] == "storage mysql://u:***@h/optuna"
    finish_sweep()


def test_a_sweep_on_a_tf_config_cluster_is_refused_before_any_parent_run(compose, client, tmp_path, monkeypatch):
    """Every task of the cluster would open its own parent and run its own jobs."""
    from unetlab.errors import ConfigError

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    with pytest.raises(ConfigError, match=r"TF_CONFIG names a cluster, which trains one run .*: sweeps \(-m\) run on "
                                          r"one machine; unset TF_CONFIG"):
        MlflowSweep().on_multirun_start(sweep_config(tmp_path))
    assert sweep_parent_run_id() is None
    assert client.search_experiments(filter_string="name = 'unetlab'") == []
