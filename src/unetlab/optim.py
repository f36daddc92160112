"""Optimizers and learning-rate schedules, selected by name (the `optimizer.name` key)."""

from __future__ import annotations

import keras

from .errors import ConfigError

OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}
SCHEDULES = ("constant", "cosine", "plateau")


def learning_rate_schedule(lr: float, schedule: str, total_steps: int, min_lr: float = 0.0):
    """A float for `constant` and `plateau` (ReduceLROnPlateau adjusts it), CosineDecay for `cosine`."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"trainer.schedule must be one of {', '.join(SCHEDULES)}. Received: schedule={schedule!r}")
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total_steps, 1), alpha=min(min_lr / lr, 1.0))
    return lr


def build_optimizer(name: str, lr: float, *, schedule: str = "constant", total_steps: int = 1, min_lr: float = 0.0,
                    **params) -> keras.optimizers.Optimizer:
    """The optimizer called `name` with keyword `params` (momentum, beta_1, weight_decay, ...)."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name must be one of {', '.join(OPTIMIZERS)}. Received: name={name!r}")
    learning_rate = learning_rate_schedule(lr, schedule, total_steps, min_lr)
    return OPTIMIZERS[name](learning_rate=learning_rate, **params)
