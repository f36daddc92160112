"""Real training runs on tiny synthetic data, tracked in a real MLflow SQLite store."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from helpers import GRID, TINY, only_run, run_runner, write_pairs
from runner.tasks.train import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, make_config):
    """One tiny training run shared by the tests that inspect what it logged."""
    root = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{root}/mlflow.db"
    import os

    cwd = os.getcwd()
    os.chdir(root)  # MLflow puts SQLite-store artifacts under ./mlruns
    try:
        objective = train(make_config(TINY + [GRID, "augment=paper", "trainer.run_eagerly=false",
                                          f"tracking.uri={uri}", f"output_dir={root}/out"]))
    finally:
        os.chdir(cwd)
    client, run = only_run(uri)
    return objective, client, run, root


def test_train_leaves_a_finished_run_and_returns_the_best_monitored_value(finished_run):
    objective, client, run, _ = finished_run
    assert run.info.status == "FINISHED" and "degenerate_prediction" not in run.data.tags
    history = [m.value for m in client.get_metric_history(run.info.run_id, "val_dice")]
    assert len(history) == 2
    assert objective == pytest.approx(max(history))
    assert run.data.metrics["best_val_dice"] == pytest.approx(objective)


def test_a_model_that_predicts_one_class_everywhere_is_tagged_degenerate(tmp_path, make_config, monkeypatch):
    """All-foreground masks: the model learns to say "foreground" everywhere (and would score Dice 1)."""
    from helpers import write_png

    for i in range(4):
        write_png(tmp_path / "images" / f"s{i}.png", np.full((32, 32), 40 * i, np.uint8))
        write_png(tmp_path / "masks" / f"s{i}.png", np.full((32, 32), 255, np.uint8))
    monkeypatch.chdir(tmp_path)  # MLflow puts SQLite-store artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    train(make_config(tiny + ["data=folder", f"data.images={tmp_path}/images", f"data.masks={tmp_path}/masks",
                              "data.val_fraction=0.5", "optimizer.lr=0.01", f"tracking.uri={uri}",
                              f"output_dir={tmp_path}/out"]))
    _, run = only_run(uri)
    assert run.data.tags["degenerate_prediction"] == "true"


def test_a_finished_run_stores_each_checkpoint_once(finished_run):
    """Two epochs wrote both state slots and uploaded everything; the run keeps one best model and the
    newest state, in its artifacts only (bytes of .keras files under the run's folders = one model)."""
    _, client, run, root = finished_run
    stored = [path for path in root.rglob("*") if path.suffix in (".keras", ".npz")]
    assert sorted(path.name for path in stored if path.suffix == ".keras") == ["best.keras"]
    assert len([path for path in stored if path.suffix == ".npz"]) == 1
    assert all("mlruns" in path.parts for path in stored)  # the output folder keeps no second copy
    assert sum(path.stat().st_size for path in stored if path.suffix == ".keras") == (
        client.list_artifacts(run.info.run_id, "checkpoints")[0].file_size)  # best.keras, listed first


def test_training_in_float16_with_xla_finishes_and_saves_a_float32_headed_model(tmp_path):
    """trainer.precision=mixed_float16 (loss scaling) and trainer.jit_compile=true on a CPU, end to end."""
    result = run_runner(*TINY, GRID, "trainer.epochs=1", "trainer.run_eagerly=false",
                        "trainer.precision=mixed_float16", "trainer.jit_compile=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = only_run(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "FINISHED" and "failed_end_steps" not in run.data.tags
    import keras

    model = keras.saving.load_model(client.download_artifacts(run.info.run_id, "checkpoints/best.keras", str(tmp_path)))
    assert model.get_layer("head").compute_dtype == "float32" and model.layers[1].compute_dtype == "float16"


def test_run_logs_the_resolved_config_as_dotted_params(finished_run):
    _, _, run, root = finished_run
    params = run.data.params
    assert params["keras_backend"] == "tensorflow" and params["precision"] == "float32"  # the policy it trained under
    assert params["model.filters"] == "4" and params["model.depth"] == "2"
    assert params["loss.name"] == "bce_dice" and params["optimizer.lr"] == "0.0003"
    assert params["trainer.monitor"] == "val_dice" and params["output_dir"] == f"{root}/out"


def test_run_logs_every_keras_metric_per_epoch_with_step(finished_run):
    _, client, run, _ = finished_run
    for name in ("loss", "val_loss", "dice", "val_dice", "iou", "val_iou", "pixel_accuracy", "val_pixel_accuracy",
                 "learning_rate"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
        assert steps == [0, 1], name


def test_run_logs_tags_config_summary_checkpoints_and_prediction_grid(finished_run):
    _, client, run, _ = finished_run
    assert run.data.tags["task"] == "train"
    assert "overrides" in run.data.tags
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model_summary.txt", "checkpoints", "predictions.png", "augmentations.png"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")} == {
        "checkpoints/best.keras", "checkpoints/state-b.npz", "checkpoints/preprocessing.json"}  # epoch 2's state
    summary = Path(client.download_artifacts(run.info.run_id, "model_summary.txt")).read_text()
    assert "enc0_conv1" in summary and "head" in summary
    config = Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text()
    assert "filters: 4" in config


def test_prediction_grid_shows_image_truth_and_prediction(finished_run):
    import tensorflow as tf

    _, client, run, _ = finished_run
    grid = tf.io.decode_png(tf.io.read_file(client.download_artifacts(run.info.run_id, "predictions.png"))).numpy()
    assert grid.shape == (28 + 2 + 2 * 256 + 2, 96 + 2 + 4 * 256 + 3 * 2, 3)  # header; Dice strip; 2 x 4 tiles x8


def test_best_checkpoint_loads_in_a_fresh_process_without_custom_objects(finished_run):
    _, client, run, _ = finished_run
    path = client.download_artifacts(run.info.run_id, "checkpoints/best.keras")
    probe = ("import sys, numpy as np, keras\n"
             "model = keras.saving.load_model(sys.argv[1])\n"
             "assert not any(m.startswith('unetlab') for m in sys.modules), 'unetlab was imported'\n"
             "print(model.predict(np.zeros((1, 32, 32, 1), 'float32'), verbose=0).shape)")
    result = subprocess.run([sys.executable, "-c", probe, path], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "(1, 32, 32, 1)"


def test_error_during_training_marks_the_run_failed(make_config, tiny_overrides, tmp_path):
    # A directory where the best checkpoint must go: saving it fails at the end of epoch 1.
    (tmp_path / "out" / "checkpoints" / "best.keras").mkdir(parents=True)
    with pytest.raises(OSError):
        train(make_config(tiny_overrides))
    _, run = only_run(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith(("IsADirectoryError", "OSError"))
    assert not list((tmp_path / "out" / "checkpoints").glob(".*partial*"))  # no temporary file left behind


def test_a_failing_prediction_grid_is_a_warning_and_the_run_still_finishes(make_config, tiny_overrides, tmp_path,
                                                                          monkeypatch, caplog):
    from runner import pictures

    def broken(*args, **kwargs):
        raise MemoryError("no room for a picture")

    monkeypatch.setattr(pictures, "save_prediction_grid", broken)
    objective = train(make_config(tiny_overrides + [GRID]))
    _, run = only_run(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "FINISHED" and run.data.tags["failed_end_steps"] == "prediction_grid"
    assert run.data.metrics["best_val_dice"] == pytest.approx(objective)  # recorded before the optional steps
    assert "prediction_grid failed (the training is kept): MemoryError: no room for a picture" in caplog.text


def test_a_signal_during_the_end_of_epoch_logging_stops_after_that_epoch_state_is_saved(make_config, tiny_overrides,
                                                                                         tmp_path, monkeypatch):
    import os

    from runner.tracking import MlflowMetrics
    from unetlab.checkpoints import Checkpoints, TrainingState
    from unetlab.errors import Interrupted

    log_epoch = MlflowMetrics.on_epoch_end

    def ctrl_c_while_logging(self, epoch, logs=None):
        log_epoch(self, epoch, logs)
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGINT)  # noted by InterruptBetweenSteps, which runs later

    monkeypatch.setattr(MlflowMetrics, "on_epoch_end", ctrl_c_while_logging)
    with pytest.raises(Interrupted):
        train(make_config(tiny_overrides + ["trainer.epochs=3"]))
    state = TrainingState.load(tmp_path / "out" / "checkpoints" / Checkpoints.STATE_SLOTS[0])
    assert state.epoch == 0  # the interrupted epoch is resumable, not lost
    _, run = only_run(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "KILLED"


def start_training(cwd, *args):
    """`python -m runner` training the tiny model for 200 epochs; returns once epoch 2 has ended."""
    import os

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "runner", *TINY, "trainer.epochs=200", "trainer.verbose=2",
                                *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    for line in process.stdout:
        if "epoch 2/200" in line or time.monotonic() > deadline:
            break
    return process


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_save_a_checkpoint_and_end_the_run_killed(tmp_path, signum, status):
    process = start_training(tmp_path)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == status, output[-2000:]
    assert "Traceback" not in output and f"interrupted ({signal.Signals(signum).name})" in output
    client, run = only_run(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "KILLED" and run.data.tags["interrupted"] == signal.Signals(signum).name
    states = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert {"checkpoints/best.keras", "checkpoints/state-a.npz"} <= states


def test_patch_kfold_dataset_normalisation_run_logs_split_statistics_and_fingerprint(make_config, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, masks = write_pairs(tmp_path, count=6, size=40)
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = make_config(tiny + ["data=folder", f"data.images={images}", f"data.masks={masks}", "data.patch_size=16",
                          "data.foreground_oversample=1.0", "data.folds=3", "data.fold=1", "data.normalize=dataset",
                          "augment=basic", f"tracking.uri={uri}", f"output_dir={tmp_path}/out"])
    train(config)
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])[0]
    assert run.info.status == "FINISHED" and len(run.data.tags["data_fingerprint"]) == 16
    split = json.loads(Path(client.download_artifacts(run.info.run_id, "data/split.json")).read_text())
    assert len(split["val"]) == 2 and len(split["train"]) == 4 and not set(split["val"]) & set(split["train"])
    statistics = json.loads(Path(client.download_artifacts(run.info.run_id, "data/statistics.json")).read_text())
    preprocessing = json.loads(
        Path(client.download_artifacts(run.info.run_id, "checkpoints/preprocessing.json")).read_text())
    assert preprocessing["mean"] == statistics["mean"] and preprocessing["normalize"] == "dataset"
    assert preprocessing["tile_size"] == 16 and preprocessing["resize"] is None
    assert run.inputs.dataset_inputs[0].dataset.digest == run.data.tags["data_fingerprint"]
    assert "augmentations.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_deterministic_runs_with_one_seed_give_equal_val_loss_under_different_names_and_print_their_link(
        make_config, tiny_overrides, tmp_path, caplog):
    import logging
    import re

    caplog.set_level(logging.INFO, logger="runner")
    histories = []
    for name in ("first", "second"):
        train(make_config(tiny_overrides + ["trainer.deterministic=true", "augment=paper", "trainer.epochs=3",
                                            f"output_dir={tmp_path}/{name}"]))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])
    for run in runs:
        histories.append([m.value for m in client.get_metric_history(run.info.run_id, "val_loss")])
    assert len(histories) == 2 and len(histories[0]) == 3
    assert histories[0] == histories[1]  # equal, not close
    names = [run.info.run_name for run in runs]  # the seed fixes the training, not the names
    assert names[0] != names[1] and all(re.fullmatch(r"unet-d2-f4-bce_dice-adam-[0-9a-f]{4}", n) for n in names)
    for run in runs:  # the link opens the UI's model-training view, not its GenAI one
        assert f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning" in (
            caplog.text)


def test_piped_run_prints_a_line_per_epoch_and_no_warning_we_cause(tmp_path):
    import re

    from helpers import run_runner

    images, masks = write_pairs(tmp_path, count=6, size=40)
    tiny = [o for o in TINY if not o.startswith(("data.num_", "trainer.verbose"))]
    # Folder data with tiled validation (batches of unknown count to tf.data) and an MLflow dataset input.
    result = run_runner(*tiny, GRID, "data=folder", f"data.images={images}", f"data.masks={masks}",
                        "data.patch_size=16", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path,
                        fresh_process=True)  # Python shows a warning once per process, and pytest takes them
    assert result.returncode == 0, result.stderr[-3000:]
    for text in ("can be interpreted in multiple ways", "ran out of data", "structure of `inputs`", "retracing"):
        assert text not in result.stderr, result.stderr
    assert not re.search(r"^\S+:\d+: \w*Warning: ", result.stderr, re.MULTILINE), result.stderr  # warnings.warn
    assert not set("━\r\b") & set(result.stdout), result.stdout  # trainer.verbose=auto: no bar in a pipe
    assert re.findall(r"\[INFO\] - (epoch \d/2) ", result.stdout) == ["epoch 1/2", "epoch 2/2"], result.stdout
    assert "Epoch 1/2" not in result.stdout  # nor Keras' own epoch lines: the summary line is the one per epoch
