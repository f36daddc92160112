"""Training callbacks: atomic best/last checkpoints, a summary line per epoch, Ctrl-C between steps."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import keras

log = logging.getLogger(__name__)


def save_atomically(model: keras.Model, path: Path) -> None:
    """Write `model` to `path` through a temporary file, so `path` is never half-written."""
    partial = path.with_name(f".{path.stem}.partial.keras")
    try:
        model.save(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def improved(value: float, best: float | None, mode: str) -> bool:
    if value is None or math.isnan(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


class Checkpoints(keras.callbacks.Callback):
    """Save `last.keras` after every epoch and `best.keras` when `monitor` improves.

    `last.keras` is the whole training state (compiled, with optimizer) to resume
    from. `best.keras` is the model alone (architecture and weights, no compile
    config), so `keras.saving.load_model` reads it in any process without our
    custom losses and metrics. `best` may be restored from an earlier run, so a
    resumed run keeps its record.
    """

    BEST = "best.keras"
    LAST = "last.keras"

    def __init__(self, directory: str | Path, monitor: str, mode: str, best: float | None = None):
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.monitor, self.mode, self.best, self.best_epoch = monitor, mode, best, None

    @property
    def best_path(self) -> Path:
        return self.directory / self.BEST

    @property
    def last_path(self) -> Path:
        return self.directory / self.LAST

    def on_train_begin(self, logs: dict | None = None) -> None:
        # An uncompiled twin sharing the trained layers: saving it writes the current weights.
        self.inference_model = keras.Model(self.model.inputs, self.model.outputs, name=self.model.name)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if improved(value, self.best, self.mode):
            self.best, self.best_epoch = float(value), epoch
            save_atomically(self.inference_model, self.best_path)
        save_atomically(self.model, self.last_path)


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


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (schedules evaluated at the current step)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class InterruptBetweenSteps(keras.callbacks.Callback):
    """Ctrl-C stops `fit` with KeyboardInterrupt at the next batch end, every time.

    Python raises KeyboardInterrupt wherever the main thread is when SIGINT lands; raised inside
    a finalizer (TensorFlow and database drivers run many) it is printed and lost, and training
    goes on. This callback only notes the request and raises it from the callback; a second
    Ctrl-C raises at once. The previous handler is back when training ends. Only in the main
    thread (where Python allows signal handlers); elsewhere it does nothing.
    """

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.requested, self.previous = False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._request)

    def _request(self, signum, frame) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True

    def _stop_if_requested(self, *args, **kwargs) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _stop_if_requested

    def on_train_end(self, logs: dict | None = None) -> None:
        self._restore()

    def _restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
