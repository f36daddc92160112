"""Checkpoints and the epoch summary, driven epoch by epoch on a tiny real Keras model."""

import logging
import os
import signal

import keras
import numpy as np
import pytest

from unetlab.callbacks import (Checkpoints, EpochSummary, InterruptBetweenSteps, current_learning_rate, improved,
                               save_atomically)


def tiny_model():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    return model


def started(callback, model):
    callback.set_model(model)
    callback.on_train_begin()
    return callback


@pytest.mark.parametrize("value, best, mode, expected", [
    (0.5, None, "max", True), (0.6, 0.5, "max", True), (0.4, 0.5, "max", False), (0.4, 0.5, "min", True),
    (0.5, 0.5, "max", False), (float("nan"), None, "max", False), (None, 0.5, "min", False)])
def test_improved_compares_in_the_monitor_direction(value, best, mode, expected):
    assert improved(value, best, mode) is expected


def test_best_is_saved_only_when_the_monitor_improves_and_last_every_epoch(tmp_path):
    model = tiny_model()
    checkpoints = started(Checkpoints(tmp_path / "ckpt", "val_dice", "max"), model)
    checkpoints.on_epoch_end(0, {"val_dice": 0.5})
    first_best = checkpoints.best_path.stat().st_mtime_ns
    checkpoints.on_epoch_end(1, {"val_dice": 0.4})  # worse: best.keras untouched
    assert checkpoints.best_path.stat().st_mtime_ns == first_best
    assert (checkpoints.best, checkpoints.best_epoch) == (0.5, 0)
    checkpoints.on_epoch_end(2, {"val_dice": 0.7})
    assert (checkpoints.best, checkpoints.best_epoch) == (0.7, 2)
    assert checkpoints.last_path.is_file()
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.keras", "last.keras"]  # no partial files


def test_best_model_loads_without_a_compile_config_and_last_keeps_the_optimizer(tmp_path):
    model = tiny_model()
    model.fit(np.ones((2, 4, 4, 1), "float32"), np.ones((2, 4, 4, 1), "float32"), epochs=1, verbose=0)
    checkpoints = started(Checkpoints(tmp_path, "val_dice", "max"), model)
    checkpoints.on_epoch_end(0, {"val_dice": 0.5})
    best = keras.saving.load_model(checkpoints.best_path)
    last = keras.saving.load_model(checkpoints.last_path)
    assert getattr(best, "optimizer", None) is None and last.optimizer is not None
    x = np.random.default_rng(0).random((1, 4, 4, 1)).astype("float32")
    np.testing.assert_allclose(best.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_a_restored_best_value_is_kept_by_a_resumed_run(tmp_path):
    checkpoints = started(Checkpoints(tmp_path, "val_loss", "min", best=0.2), tiny_model())
    checkpoints.on_epoch_end(0, {"val_loss": 0.3})
    assert checkpoints.best == 0.2 and not checkpoints.best_path.exists()


def test_a_failed_save_leaves_the_previous_file_and_no_partial_file(tmp_path):
    path = tmp_path / "best.keras"
    path.write_text("previous")

    class Broken:
        def save(self, target):
            open(target, "w").write("half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_atomically(Broken(), path)
    assert path.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]


def test_epoch_summary_logs_one_line_with_metrics_lr_and_improvement(caplog):
    summary = started(EpochSummary(3, "val_dice", "max"), tiny_model())
    with caplog.at_level(logging.INFO, logger="unetlab.callbacks"):
        summary.on_epoch_begin(0)
        summary.on_epoch_end(0, {"loss": 0.5, "val_dice": 0.6})
        summary.on_epoch_begin(1)
        summary.on_epoch_end(1, {"loss": 0.4, "val_dice": 0.5})
    first, second = [r.getMessage() for r in caplog.records]
    assert first.startswith("epoch 1/3 ") and "lr=1.00e-02" in first and "val_dice=0.6000" in first
    assert "(val_dice improved)" in first and "improved" not in second
    assert current_learning_rate(summary.model) == pytest.approx(0.01)


def test_ctrl_c_is_raised_at_the_next_batch_end_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGINT)
    callback = started(InterruptBetweenSteps(), tiny_model())
    os.kill(os.getpid(), signal.SIGINT)  # noted, not raised where it lands
    assert callback.requested
    with pytest.raises(KeyboardInterrupt):
        callback.on_train_batch_end(0, logs={})
    assert signal.getsignal(signal.SIGINT) is before


def test_a_second_ctrl_c_raises_at_once_and_a_quiet_run_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    callback = started(InterruptBetweenSteps(), tiny_model())
    callback.on_train_batch_end(0, logs={})  # nothing requested: training goes on
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        signal.getsignal(signal.SIGINT)  # a bytecode boundary after the signal
    assert signal.getsignal(signal.SIGINT) is before
    quiet = started(InterruptBetweenSteps(), tiny_model())
    quiet.on_train_end()
    assert signal.getsignal(signal.SIGINT) is before
