"""Training callbacks: a summary line per epoch, a time limit, Ctrl-C and SIGTERM between steps (checkpoints:
`unetlab.checkpoints`)."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time

import keras

from .errors import Interrupted

log = logging.getLogger(__name__)


def improved(value: float, best: float | None, mode: str) -> bool:
    if value is None or math.isnan(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


class EpochSummary(keras.callbacks.Callback):
    """Log one line per epoch: time, learning rate, every metric, and whether `monitor` improved."""

    def __init__(self, epochs: int, monitor: str, mode: str):
        super().__init__()
        self.epochs, self.monitor, self.mode, self.best = epochs, monitor, mode, None
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        note = ""
        if improved(logs.get(self.monitor), self.best, self.mode):
            self.best, note = float(logs[self.monitor]), f"  ({self.monitor} improved)"
        metrics = " ".join(f"{key}={float(value):.4f}" for key, value in logs.items() if key != "learning_rate")
        lr = current_learning_rate(self.model)
        log.info("epoch %d/%d %.1fs lr=%.2e %s%s", epoch + 1, self.epochs, time.perf_counter() - self.started,
                 lr, metrics, note)


class TimeLimit(keras.callbacks.Callback):
    """Stop training after the epoch past which one more epoch (at the mean pace so far, less the first batch's
    one-off tracing) would end after `minutes` of training and validation (counted from the first `fit` it sees: a
    training in phases is one), so a run on a slower machine ends in time with the best model it reached.
    `stopped_epoch` is the last epoch trained when it stopped (None: it did not)."""

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = minutes * 60.0
        self.started, self.first_batch, self.epochs, self.stopped_epoch = None, None, 0, None

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.first_batch is None:  # tracing the training step: paid once, not by every epoch
            self.first_batch = time.monotonic() - self.started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs += 1
        elapsed = time.monotonic() - self.started
        if elapsed + (elapsed - (self.first_batch or 0.0)) / self.epochs > self.seconds:
            self.model.stop_training, self.stopped_epoch = True, epoch
            log.warning("stopping after epoch %d: another would end past the time limit of %.1f min (%.1f min so far)",
                        epoch + 1, self.seconds / 60, elapsed / 60)


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (schedules evaluated at the current step)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class InterruptBetweenSteps(keras.callbacks.Callback):
    """Ctrl-C or SIGTERM stops `fit` with `Interrupted` at the next batch end, every time.

    Python raises KeyboardInterrupt wherever the main thread is when SIGINT lands; raised inside
    a finalizer (TensorFlow and database drivers run many) it is printed and lost, and training
    goes on. This callback only notes the request and raises it from the callback; a second
    signal raises at once. The previous handlers are back when training ends. Only in the main
    thread (where Python allows signal handlers); elsewhere it does nothing. Put it last in a
    callback list: at an epoch's end, the callbacks after it (checkpoints) would not run.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.requested, self.previous = None, {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {signum: signal.signal(signum, self._request) for signum in self.SIGNALS}

    def _request(self, signum, frame) -> None:
        if self.requested is not None:
            self._restore()
            raise Interrupted(signum)
        self.requested = signum

    def _stop_if_requested(self, *args, **kwargs) -> None:
        if self.requested is not None:
            self._restore()
            raise Interrupted(self.requested)

    on_train_batch_end = on_test_batch_end = on_epoch_end = _stop_if_requested

    def on_train_end(self, logs: dict | None = None) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
