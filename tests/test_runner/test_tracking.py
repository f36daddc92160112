"""MLflow run lifecycle, params from the config, metrics per epoch, retries on a locked store:
against a real SQLite store under tmp_path, without training."""

import dataclasses
import re

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from runner import tracking


@pytest.fixture
def store(tmp_path, monkeypatch, make_config):
    """A Config whose tracking points at an empty SQLite store in tmp_path (also the cwd)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return make_config([f"tracking.uri={uri}", f"output_dir={tmp_path}/out"]), MlflowClient(uri)


def the_runs(client):
    return client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])


def test_params_are_the_config_with_dotted_keys_without_the_search_space(make_config, tmp_path):
    params = tracking.config_params(make_config(["model.filters=8", f"output_dir={tmp_path}"]))
    assert params["model.filters"] == "8" and params["model.pooling"] == "max"  # enums as their values
    assert params["augment.scale"] == "[1.0, 1.0]" and params["hparams_search"] == "None"
    search = tracking.config_params(make_config(["hparams_search=optuna", f"output_dir={tmp_path}"]))
    assert search["hparams_search.n_trials"] == "20"
    assert not any(key.startswith("hparams_search.params") for key in search)  # the parent run holds the space
    assert tracking.flatten({"search": {"params": {"a": 1}, "n": 2}}) == {"search.params.a": "1", "search.n": "2"}


@pytest.mark.parametrize("ending, status", [(None, "FINISHED"), (RuntimeError, "FAILED"),
                                            (KeyboardInterrupt, "KILLED")])
def test_tracked_run_ends_with_the_status_of_how_its_block_ended(store, ending, status):
    config, client = store
    if ending is None:
        with tracking.tracked_run(config.tracking, {"task": "train"}):
            tracking.log_config(config)
    else:
        with pytest.raises(ending):
            with tracking.tracked_run(config.tracking, {"task": "train"}):
                raise ending()
    (run,) = the_runs(client)
    assert run.info.status == status and run.data.tags["task"] == "train"
    assert "overrides" in run.data.tags and mlflow.active_run() is None
    if ending is None:
        assert run.data.params["model.filters"] == "32"
        logged = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config.yaml")))
        assert logged["model"]["filters"] == 32 and logged["model"]["pooling"] == "max"


def test_a_sweep_job_nests_under_the_parent_run_named_in_the_environment(store, monkeypatch):
    config, client = store
    experiment_id = tracking.use_experiment(config.tracking)
    parent = client.create_run(experiment_id)
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, parent.info.run_id)
    with tracking.tracked_run(config.tracking, {}) as run:
        run_id = run.info.run_id
    assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_the_source_commit_is_tagged_once_as_mlflow_tags_it(store):
    config, client = store
    with tracking.tracked_run(config.tracking, {}):
        pass
    tags = the_runs(client)[0].data.tags
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["git_dirty"] in ("true", "false")
    assert "git_commit" not in tags


def test_only_the_unetlab_checkout_is_tagged_with_a_commit_not_a_repository_around_site_packages(tmp_path):
    import subprocess

    # A user's project repository with a virtual environment (and unetlab installed into it) inside.
    installed = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "runner"
    installed.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "their-project"\n')
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "pyproject.toml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "theirs"], cwd=tmp_path, check=True)
    assert tracking.git_commit(installed) == {}
    # Even laid out as a checkout (src/runner), a repository whose pyproject names another project.
    (tmp_path / "src" / "runner").mkdir(parents=True)
    assert tracking.git_commit(tmp_path / "src" / "runner") == {}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tracking.Path(tracking.__file__).parent,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert tracking.git_commit()["mlflow.source.git.commit"] == head


def test_retry_locked_waits_out_a_locked_store_and_reraises_anything_else(monkeypatch):
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "done"

    assert tracking.retry_locked(locked_twice) == "done" and len(calls) == 3
    with pytest.raises(ValueError):
        tracking.retry_locked(lambda: (_ for _ in ()).throw(ValueError("other")))
    wrapped = RuntimeError("storage error")
    wrapped.__cause__ = RuntimeError("database is locked")
    assert tracking.is_locked(wrapped) and not tracking.is_locked(RuntimeError("no"))


def test_epoch_metrics_and_learning_rate_are_logged_with_the_epoch_as_step(store):
    import keras

    config, client = store
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    callback = tracking.MlflowMetrics()
    callback.set_model(model)
    with tracking.tracked_run(config.tracking, {}) as run:
        callback.on_epoch_end(0, {"loss": 1.0, "val_dice": 0.5})
        callback.on_epoch_end(1, {"loss": 0.5, "val_dice": 0.75})
    history = client.get_metric_history(run.info.run_id, "val_dice")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.75)]
    assert client.get_metric_history(run.info.run_id, "learning_rate")[0].value == pytest.approx(0.01)


def test_runs_link_opens_the_training_view_of_the_server_or_says_how_to_start_the_ui():
    assert tracking.runs_link("http://host:5000/", "1", "abc") == (
        "http://host:5000/#/experiments/1/runs/abc?workflowType=machine_learning")
    local = tracking.runs_link("sqlite:///mlflow.db", "1", "abc")
    assert local.startswith("mlflow ui --backend-store-uri sqlite:///mlflow.db")
    assert local.endswith("http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning")


def test_runs_with_one_seed_get_different_names_that_say_what_they_are(store):
    import keras

    config, client = store
    for _ in range(2):
        keras.utils.set_random_seed(config.seed)  # as the train task does, before its run starts
        with tracking.tracked_run(config.tracking, {"task": "train"}, what=tracking.training_name(config)):
            pass
    names = [run.info.run_name for run in the_runs(client)]
    assert names[0] != names[1], names
    assert all(re.fullmatch(r"unet-d4-f32-bce_dice-adam-[0-9a-f]{4}", name) for name in names), names


def test_a_run_is_named_by_its_task_unless_the_user_names_it(store):
    config, client = store
    with tracking.tracked_run(config.tracking, {"task": "export"}) as run:
        pass
    assert re.fullmatch(r"export-[0-9a-f]{4}", client.get_run(run.info.run_id).info.run_name)
    named = dataclasses.replace(config.tracking, run_name="baseline")
    with tracking.tracked_run(named, {"task": "train"}, what=tracking.training_name(config)) as run:
        pass
    assert client.get_run(run.info.run_id).info.run_name == "baseline"


def test_a_run_with_a_parent_nests_under_it_in_its_experiment_not_under_the_sweep(store, monkeypatch):
    config, client = store
    source = client.create_run(client.create_experiment("elsewhere"))
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, client.create_run(tracking.use_experiment(config.tracking)).info.run_id)
    with tracking.tracked_run(config.tracking, {}, parent_run_id=source.info.run_id) as run:
        pass
    child = client.get_run(run.info.run_id)
    assert child.data.tags["mlflow.parentRunId"] == source.info.run_id and "sweep_job" not in child.data.tags
    assert child.info.experiment_id == source.info.experiment_id
