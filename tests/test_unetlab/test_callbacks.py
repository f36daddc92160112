"""The epoch summary and the signal handling, driven on a tiny real Keras model."""

import logging
import os
import signal

import keras
import numpy as np
import pytest

from unetlab.callbacks import EpochSummary, InterruptBetweenSteps, current_learning_rate, improved
from unetlab.errors import Interrupted


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


def test_sigterm_stops_at_the_next_batch_end_as_interrupted_and_both_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    callback = started(InterruptBetweenSteps(), tiny_model())
    os.kill(os.getpid(), signal.SIGTERM)  # noted: the process is not killed
    assert callback.requested == signal.SIGTERM
    with pytest.raises(Interrupted) as stopped:
        callback.on_train_batch_end(0, logs={})
    assert stopped.value.signum == signal.SIGTERM and isinstance(stopped.value, KeyboardInterrupt)
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_time_limit_stops_after_the_epoch_past_which_another_would_overrun(monkeypatch):
    from unetlab.callbacks import TimeLimit

    clock = iter([0.0, 50.0, 100.0, 150.0, 200.0])  # train begin, then each epoch's end: 50 s an epoch
    monkeypatch.setattr("unetlab.callbacks.time.monotonic", lambda: next(clock))
    limit = TimeLimit(minutes=3.5)  # 210 s: the 4th epoch would end at 200 s, a 5th at 250 s
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # as fit sets it
    limit.set_model(model)
    limit.on_train_begin()
    stops = []
    for epoch in range(4):
        limit.on_epoch_end(epoch)
        stops.append(limit.model.stop_training)
    assert stops == [False, False, False, True] and limit.stopped_epoch == 3


def test_the_time_limit_counts_from_the_first_fit_of_a_training_in_phases(monkeypatch):
    """A frozen-encoder phase and the rest are two `fit`s of one training: the clock does not restart."""
    from unetlab.callbacks import TimeLimit

    clock = iter([0.0, 50.0, 100.0, 150.0, 200.0])  # begin, 2 epochs; begin again (not read), 2 epochs
    monkeypatch.setattr("unetlab.callbacks.time.monotonic", lambda: next(clock))
    limit = TimeLimit(minutes=3.5)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False
    limit.set_model(model)
    stops = []
    for epochs in ((0, 1), (2, 3)):
        limit.on_train_begin()
        for epoch in epochs:
            limit.on_epoch_end(epoch)
            stops.append(limit.model.stop_training)
    assert stops == [False, False, False, True] and limit.stopped_epoch == 3


def test_the_time_limit_does_not_charge_every_epoch_the_first_batchs_tracing(monkeypatch):
    from unetlab.callbacks import TimeLimit

    # begin, the first batch ends after 40 s of tracing, the epoch at 60 s: the next would take 20 s, not 60 s
    clock = iter([0.0, 40.0, 60.0])
    monkeypatch.setattr("unetlab.callbacks.time.monotonic", lambda: next(clock))
    limit = TimeLimit(minutes=1.5)  # 90 s: a second epoch ends near 80 s
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False
    limit.set_model(model)
    limit.on_train_begin()
    limit.on_train_batch_end(0)
    limit.on_epoch_end(0)
    assert not model.stop_training and limit.stopped_epoch is None
