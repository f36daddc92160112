"""Checkpoints of a training run: `best.keras`, and the training state to resume from, written
off the training thread.

The training state is one `.npz` file (NumPy arrays only: loading it runs no code): every
variable of the model and its optimizer (weights, moments, step count, learning rate, seed
generator states) with its path, the last completed epoch, the number of steps the learning-rate
schedule spans, and the counters of the callbacks that carry state between epochs (best value,
early stopping and plateau waits). It alternates between two
slots, so a process killed while writing or uploading one still leaves the other whole.

At each epoch end the training thread only copies the variables to memory (tens of ms for a
7.8M-parameter U-Net and its Adam moments); a background thread writes the files atomically
and hands them to `on_written` (the runner uploads them to MLflow).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from .callbacks import improved
from .models.heads import inference_model

log = logging.getLogger(__name__)

# The counters each kind of callback carries from one epoch to the next.
COUNTERS = {
    "Checkpoints": ("best", "best_epoch"),
    "EpochSummary": ("best",),
    "EarlyStopping": ("wait", "best", "best_epoch", "stopped_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
}


def temporary_name(path: Path) -> Path:
    """A hidden name beside `path`, unique to this process and call (two runs never share one)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(temporary)` then rename it to `path`, so `path` is never half-written."""
    partial = temporary_name(path)
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def save_atomically(model: keras.Model, path: Path) -> Path:
    """Write `model` to `path` (a `.keras` file) through a temporary file."""
    return write_atomically(path, model.save)


def state_variables(model: keras.Model) -> list:
    """The variables a resumed run needs: the model's (weights, statistics, seed states) and its
    optimizer's (built here if training has not built it yet)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return list(model.variables)
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return list(model.variables) + list(optimizer.variables)


def comparable_path(path: str) -> str:
    """A variable's path without the counters Keras appends to names it makes unique in a process
    (`adam_1/conv2d_3_kernel_momentum` -> `adam/conv2d_kernel_momentum`): the same config built in
    another process, or again in this one, gives the same comparable paths."""
    return re.sub(r"_\d+(?=/|_|$)", "", path)


@dataclass
class TrainingState:
    """What training needs to go on after `epoch` (the last completed epoch, 0-based): the
    variables' values and `names` (their paths, in order), and `schedule_steps`, the steps the
    learning-rate schedule spans (None: a state saved before it was recorded)."""

    epoch: int
    arrays: list[np.ndarray]
    names: list[str] | None  # None: a state saved before the paths were compared (matched by order and shape)
    counters: dict[str, dict] = field(default_factory=dict)
    source: Path | None = None  # the file it was loaded from
    schedule_steps: int | None = None

    @classmethod
    def capture(cls, model: keras.Model, epoch: int, callbacks: Sequence[keras.callbacks.Callback],
                schedule_steps: int | None = None) -> "TrainingState":
        variables = state_variables(model)
        return cls(epoch, [np.array(keras.ops.convert_to_numpy(v)) for v in variables], [v.path for v in variables],
                   callback_counters(callbacks), schedule_steps=schedule_steps)

    def save(self, path: Path) -> Path:
        info = json.dumps({"epoch": self.epoch, "names": self.names, "counters": self.counters,
                           "schedule_steps": self.schedule_steps, "variables": len(self.arrays)})
        return write_atomically(path, lambda partial: np.savez(
            partial, *self.arrays, info=np.frombuffer(info.encode(), np.uint8)))

    @classmethod
    def load(cls, path: Path) -> "TrainingState":
        """Read a state file; ValueError if it is not one (or was cut short)."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                info = json.loads(archive["info"].tobytes().decode())
                count = info.get("variables") or len(info.get("names") or  # states before "variables"
                                                     [name for name in archive.files if name.startswith("arr_")])
                arrays = [archive[f"arr_{index}"] for index in range(count)]
        except (OSError, KeyError, TypeError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} is not a readable training state ({error})") from None
        return cls(info["epoch"], arrays, info.get("names"), info["counters"], Path(path),
                   info.get("schedule_steps"))

    def restore(self, model: keras.Model) -> None:
        """Assign the saved variables to `model` (compiled like the saved one; its optimizer is built
        here). ValueError naming the first variable whose path (when the state has them) or shape
        differs, or that one side lacks."""
        variables = state_variables(model)
        for index, (variable, array) in enumerate(zip(variables, self.arrays)):
            if self.names and comparable_path(self.names[index]) != comparable_path(variable.path):
                raise self._mismatch(f"{self._name(index)} in the state is {variable.path} here", variables)
            if tuple(variable.shape) != array.shape:
                raise self._mismatch(f"{self._name(index)} has shape {array.shape} in the state and "
                                     f"{tuple(variable.shape)} here", variables)
        if len(variables) > len(self.arrays):
            raise self._mismatch(f"{variables[len(self.arrays)].path} is not in the state", variables)
        if len(variables) < len(self.arrays):
            raise self._mismatch(f"{self._name(len(variables))} of the state is not here", variables)
        for variable, array in zip(variables, self.arrays):
            variable.assign(array)

    def _name(self, index: int) -> str:
        return self.names[index] if self.names else f"variable {index}"

    def _mismatch(self, detail: str, variables: list) -> ValueError:
        return ValueError(f"the saved training state does not match this model and optimizer: {detail} "
                          f"({len(self.arrays)} saved variables, {len(variables)} here)")


def latest_state(paths: Sequence[Path]) -> TrainingState | None:
    """The readable state with the highest epoch among `paths` (missing or cut-short files skipped)."""
    states = []
    for path in paths:
        if path.is_file():
            try:
                states.append(TrainingState.load(path))
            except ValueError as error:
                log.warning("skipping %s", error)
    return max(states, key=lambda state: state.epoch, default=None)


def callback_counters(callbacks: Sequence[keras.callbacks.Callback]) -> dict[str, dict]:
    """The `COUNTERS` of each callback, by class name (JSON-ready floats and ints)."""
    counters = {}
    for callback in callbacks:
        names = COUNTERS.get(type(callback).__name__, ())
        values = {name: getattr(callback, name, None) for name in names}
        counters[type(callback).__name__] = {
            name: value if value is None or isinstance(value, (int, str)) else float(value)
            for name, value in values.items()}
    return counters


def restore_counters(callbacks: Sequence[keras.callbacks.Callback], counters: dict[str, dict]) -> None:
    for callback in callbacks:
        for name, value in counters.get(type(callback).__name__, {}).items():
            setattr(callback, name, value)


class BackgroundWriter:
    """One thread running file jobs in order. A job's error is raised in the training thread at
    the next `submit` or `wait`. At most `backlog` jobs wait, so memory stays bounded."""

    def __init__(self, backlog: int = 2):
        self.jobs: queue.Queue = queue.Queue(maxsize=backlog)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="checkpoint-writer", daemon=True)
        self.thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self.jobs.put(job)

    def wait(self) -> None:
        self.jobs.join()
        self._raise()

    def stop(self) -> None:
        """Wait for the jobs, end the thread, raise a job's error."""
        self.jobs.put(None)
        self.thread.join()
        self._raise()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                self.jobs.task_done()
                return
            try:
                if self.error is None:
                    job()
            except BaseException as error:  # noqa: BLE001 - handed to the training thread
                self.error = error
            finally:
                self.jobs.task_done()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class Checkpoints(keras.callbacks.Callback):
    """`best.keras` when `monitor` improves, and the training state every `every` epochs (and at
    the end), both written in the background.

    `best.keras` is the model alone (architecture and weights, no compile config), so
    `keras.saving.load_model` reads it in any process without our custom losses and metrics.
    `watch(callbacks)` names the callbacks whose counters the state carries; put this callback
    after them, so an epoch's state includes their updates. `resume_from(state)` restores a run.
    `close()` (also on an interruption) writes the latest unsaved state and waits for the writes.
    A training of several `fit`s (`unetlab.finetune.phases`) keeps the counters from one to the next.
    """

    BEST = "best.keras"
    STATE_SLOTS = ("state-a.npz", "state-b.npz")

    def __init__(self, directory: str | Path, monitor: str, mode: str, every: int = 1,
                 on_written: Callable[[list[Path]], None] | None = None):
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.monitor, self.mode, self.every, self.on_written = monitor, mode, every, on_written
        self.schedule_steps: int | None = None  # recorded in each state (the steps the schedule spans)
        self.best, self.best_epoch = None, None
        self.watched: list[keras.callbacks.Callback] = [self]
        self.carried: dict[str, dict] | None = None  # counters for the next fit: a resumed state's or the last fit's
        self.latest: TrainingState | None = None  # captured, not yet written
        self.writes = 0
        self.writer: BackgroundWriter | None = None

    @property
    def best_path(self) -> Path:
        return self.directory / self.BEST

    @property
    def state_paths(self) -> list[Path]:
        return [self.directory / name for name in self.STATE_SLOTS]

    def watch(self, callbacks: Sequence[keras.callbacks.Callback]) -> None:
        self.watched = [callback for callback in callbacks if type(callback).__name__ in COUNTERS]

    def resume_from(self, model: keras.Model, state: TrainingState) -> None:
        """Load `state` into the compiled `model` now; the counters go back after `on_train_begin`.
        The next state goes to the other slot than the one `state` came from."""
        state.restore(model)
        self.carried = state.counters
        self.writes = 1 + self.STATE_SLOTS.index(state.source.name) if state.source else 0
        restore_counters([self], state.counters)

    def on_train_begin(self, logs: dict | None = None) -> None:
        # An uncompiled twin sharing the trained layers (called with one tensor, not a list of one; without
        # deep supervision's auxiliary heads), and a copy the writer thread owns.
        network = inference_model(self.model)
        inputs, outputs = network.inputs, network.outputs
        self.inference_model = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                                           outputs[0] if len(outputs) == 1 else outputs, name=network.name)
        self.shadow = keras.models.clone_model(self.inference_model)
        self.writer = BackgroundWriter()
        if self.carried is not None:  # after the other callbacks reset their counters
            restore_counters(self.watched, self.carried)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if improved(value, self.best, self.mode):
            self.best, self.best_epoch = float(value), epoch
            weights = [np.array(w) for w in self.inference_model.get_weights()]
            self.writer.submit(lambda: self._write_best(weights))
        self.latest = TrainingState.capture(self.model, epoch, self.watched, self.schedule_steps)
        last_epoch = epoch + 1 >= self.params.get("epochs", epoch + 1) or self.model.stop_training
        if (epoch + 1) % self.every == 0 or last_epoch:
            self._write_latest()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.carried = callback_counters(self.watched)  # a next fit of the same training goes on from them
        self.close()

    def close(self) -> None:
        """Write the latest captured state if it is not written yet, and wait for every write."""
        if self.writer is None:
            return
        if self.latest is not None:
            self._write_latest()
        writer, self.writer = self.writer, None
        writer.stop()

    def stale_state(self) -> Path | None:
        """After `close`: the state slot written before the last one (an older epoch), if any. Both
        slots guard against a kill mid-write; once training has ended, the newest alone resumes."""
        if self.writes == 0:
            return None
        older = self.state_paths[self.writes % 2]
        return older if older.exists() else None

    def _write_latest(self) -> None:
        state, path = self.latest, self.state_paths[self.writes % 2]
        self.latest, self.writes = None, self.writes + 1
        self.writer.submit(lambda: self._written([state.save(path)]))

    def _write_best(self, weights: list[np.ndarray]) -> None:
        self.shadow.set_weights(weights)
        self._written([save_atomically(self.shadow, self.best_path)])

    def _written(self, paths: list[Path]) -> None:
        if self.on_written is not None:
            self.on_written(paths)
