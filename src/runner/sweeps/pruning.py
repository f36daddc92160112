"""Epoch-level pruning: a Keras callback that reports to the Optuna trial a job runs."""

from __future__ import annotations

import logging
import math

import keras

from ..tracking import retry_locked

log = logging.getLogger(__name__)


class TrialPruning(keras.callbacks.Callback):
    """Report `monitor` to `trial` after every epoch; stop training when its pruner says so.

    Unlike raising optuna.TrialPruned inside `fit`, stopping lets the run finish normally:
    its checkpoints and pictures are still logged, and the sweeper tells the study it was
    pruned (from `pruned_epoch`, which the job records on its trial when it finishes).
    """

    def __init__(self, trial, monitor: str) -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.pruned_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        retry_locked(self.trial.report, float(value), epoch)
        if retry_locked(self.trial.should_prune):
            self.pruned_epoch = epoch
            self.model.stop_training = True
            log.info("trial %d pruned after epoch %d (%s=%.4f)", self.trial.number, epoch + 1, self.monitor, value)
