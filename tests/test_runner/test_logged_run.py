"""resume=RUN_ID and +from_run=RUN_ID: real runs in subprocesses, a real MLflow SQLite store."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, run_runner
from unetlab.checkpoints import Checkpoints, latest_state

pytestmark = pytest.mark.slow

EPOCHS = 20
DETERMINISTIC = [o for o in TINY if not o.startswith("trainer.epochs")] + [
    f"trainer.epochs={EPOCHS}", "trainer.deterministic=true", "trainer.verbose=2"]


def runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("unetlab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def final_state(client: MlflowClient, run_id: str, target: Path):
    """The newest training state a run logged (a finished run keeps one slot)."""
    target.mkdir(parents=True)
    slots = [Path(artifact.path).name for artifact in client.list_artifacts(run_id, "checkpoints")
             if Path(artifact.path).name in Checkpoints.STATE_SLOTS]
    assert len(slots) == 1
    return latest_state([Path(client.download_artifacts(run_id, f"checkpoints/{name}", str(target))) for name in slots])


def kill_after_second_epoch(cwd: Path, *args: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    for line in process.stdout:
        if f"epoch 2/{EPOCHS}" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGKILL)  # no handler runs: the run stays RUNNING
    process.wait(timeout=60)


def test_a_run_killed_with_sigkill_resumes_on_another_directory_exactly_as_an_uninterrupted_run(tmp_path):
    reference_dir, first_dir, second_dir = (tmp_path / name for name in ("reference", "first", "second"))
    for directory in (reference_dir, first_dir, second_dir):
        directory.mkdir()
    result = run_runner(*DETERMINISTIC, cwd=reference_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    store = f"sqlite:///{first_dir}/mlflow.db"
    kill_after_second_epoch(first_dir, *DETERMINISTIC, f"tracking.uri={store}")
    [killed] = runs(store)
    assert killed.info.status == "RUNNING"
    shutil.rmtree(first_dir / "outputs")  # only the tracking store (and its artifacts) carries the state

    result = run_runner(f"resume={killed.info.run_id}", f"tracking.uri={store}", cwd=second_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming run" in result.stdout
    [resumed] = runs(store)
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    client = MlflowClient(store)
    for metric in ("loss", "val_loss", "learning_rate"):
        assert [m.step for m in client.get_metric_history(resumed.info.run_id, metric)] == list(range(EPOCHS))

    reference_client = MlflowClient(f"sqlite:///{reference_dir}/mlflow.db")
    [reference] = runs(f"sqlite:///{reference_dir}/mlflow.db")
    ours = final_state(client, resumed.info.run_id, tmp_path / "ours")
    theirs = final_state(reference_client, reference.info.run_id, tmp_path / "theirs")
    assert ours.epoch == theirs.epoch == EPOCHS - 1
    for mine, expected in zip(ours.arrays, theirs.arrays):  # weights, Adam moments and step: equal
        np.testing.assert_array_equal(mine, expected)
    reference_losses = [m.value for m in reference_client.get_metric_history(reference.info.run_id, "val_loss")]
    assert [m.value for m in client.get_metric_history(resumed.info.run_id, "val_loss")] == reference_losses


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("logged")
    result = run_runner(*TINY, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs(f"sqlite:///{root}/mlflow.db")
    return root, run.info.run_id


def test_resuming_a_finished_run_does_nothing_unless_more_epochs_are_asked_for(finished):
    root, run_id = finished
    uri = f"sqlite:///{root}/mlflow.db"
    result = run_runner(f"resume={run_id}", cwd=root)
    assert result.returncode == 0 and "is FINISHED after 2 epochs: nothing to do" in result.stdout
    result = run_runner(f"resume={run_id}", "trainer.epochs=4", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs(uri)
    assert run.info.status == "FINISHED"
    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run_id, "val_dice")] == [0, 1, 2, 3]
    # The cosine schedule of 2 epochs is not restarted nor stretched to 4: it ends where it would
    # have, and the extra epochs train at trainer.min_lr (before: 4 epochs' decay, back up at epoch 3).
    rates = [m.value for m in sorted(client.get_metric_history(run_id, "learning_rate"), key=lambda m: m.step)]
    assert len(rates) == 4 and all(later <= earlier for earlier, later in zip(rates, rates[1:])), rates
    assert rates[1:] == pytest.approx([float(run.data.params["trainer.min_lr"])] * 3, rel=1e-3)


@pytest.mark.parametrize("args, expected", [
    (["model.filters=8"], "cannot take model.filters (allowed: trainer.epochs"),
    (["data=folder"], "cannot take data (allowed"),
])
def test_resume_refuses_overrides_that_change_what_was_trained(finished, args, expected):
    root, run_id = finished
    result = run_runner(f"resume={run_id}", *args, cwd=root)
    assert result.returncode == 2 and expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["resume", "+from_run"])
def test_an_unknown_run_id_is_one_line(finished, key):
    root, _ = finished
    result = run_runner(f"{key}=0123456789abcdef", cwd=root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {key.lstrip('+')}=0123456789abcdef is not a run in tracking.uri=sqlite:///mlflow.db")


def test_from_run_recomposes_the_logged_config_with_overrides_on_top_in_a_new_tagged_run(finished):
    root, run_id = finished
    result = run_runner(f"+from_run={run_id}", "model.filters=8", "trainer.epochs=1", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{root}/mlflow.db"
    new = next(run for run in runs(uri) if run.info.run_id != run_id and run.data.tags.get("from_run"))
    old = MlflowClient(uri).get_run(run_id)
    assert new.data.tags["from_run"] == run_id and new.info.status == "FINISHED"
    assert new.data.params["model.filters"] == "8" and new.data.params["trainer.epochs"] == "1"
    changed = {key for key, value in new.data.params.items() if old.data.params.get(key) != value}
    assert changed == {"model.filters", "trainer.epochs", "output_dir", "tracking.tags.from_run"}


def test_a_training_state_that_does_not_fit_the_model_is_one_line(tmp_path):
    """A state saved by other model code (here: another run's, of a smaller model) is refused by name."""
    small = run_runner(*TINY, "model.filters=2", "tracking.run_name=small", cwd=tmp_path)
    big = run_runner(*TINY, "tracking.run_name=big", cwd=tmp_path)
    assert small.returncode == big.returncode == 0, small.stderr[-2000:] + big.stderr[-2000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    by_name = {run.info.run_name: run for run in runs(uri)}
    client = MlflowClient(uri)
    for name in Checkpoints.STATE_SLOTS:  # the small run's state in both slots of the big run
        path = final_state(client, by_name["small"].info.run_id, tmp_path / name).source
        client.log_artifact(by_name["big"].info.run_id, str(path.rename(path.with_name(name))), "checkpoints")
    result = run_runner(f"resume={by_name['big'].info.run_id}", "trainer.epochs=3", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: resume={by_name['big'].info.run_id}: the saved training state does not match this model")
