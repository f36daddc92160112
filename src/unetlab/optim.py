"""Optimizers and learning-rate schedules, selected by name (`build_optimizer(name, schedule=)`)."""

from __future__ import annotations

import keras

from .names import SCHEDULES, check_choice

POLY_POWER = 0.9  # nnU-Net's PolyLRScheduler exponent
OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}


def learning_rate_schedule(lr: float, schedule: str, total_steps: int, min_lr: float = 0.0):
    """A float for `constant` and `plateau` (ReduceLROnPlateau adjusts it), CosineDecay for `cosine`, nnU-Net's
    poly decay for `poly`: lr * (1 - step / total_steps) ** 0.9, down to `min_lr`."""
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total_steps, 1), alpha=min(min_lr / lr, 1.0))
    if schedule == "poly":
        return keras.optimizers.schedules.PolynomialDecay(lr, decay_steps=max(total_steps, 1),
                                                          end_learning_rate=min(min_lr, lr), power=POLY_POWER)
    return lr


def build_optimizer(name: str, lr: float, *, schedule: str = "constant", total_steps: int = 1, min_lr: float = 0.0,
                    **params) -> keras.optimizers.Optimizer:
    """The optimizer called `name` with keyword `params` (momentum, beta_1, weight_decay, ...)."""
    check_choice("name", name, tuple(OPTIMIZERS))
    learning_rate = learning_rate_schedule(lr, schedule, total_steps, min_lr)
    return OPTIMIZERS[name](learning_rate=learning_rate, **params)
