"""Fine-tuning a pretrained encoder: frozen for the first epochs, then trained, at a smaller learning rate.

The encoder of `unetlab.models.encoder_unet` is the sub-model named `ENCODER`. Frozen, its layers are not
trainable, which in Keras also runs its batch norms in inference mode (their moving statistics stay those
of the pretrained weights). Keras optimizers track a fixed list of variables (a JAX train step passes
exactly those), so training goes in phases (`phases`), one `fit` each: the optimizer of the frozen phase
covers the decoder; at the unfreeze point a new one covering every variable takes over the decoder's
moments, the step count and the learning rate (`transfer_state`), so the schedule runs on unbroken.

`scale_encoder_learning_rate` gives the encoder's variables `scale` x the learning rate (segmentation
models' "discriminative learning rates"); the weight decay of AdamW stays unscaled.
"""

from __future__ import annotations

import keras

from .checkpoints import comparable_path

ENCODER = "encoder"  # the backbone sub-model's name (unetlab.models.encoder_unet)


def encoder_of(model: keras.Model) -> keras.Model | None:
    """The pretrained-encoder sub-model of `model`, or None if it has none."""
    try:
        return model.get_layer(ENCODER)
    except ValueError:
        return None


def encoder_frozen(model: keras.Model) -> bool:
    """Whether `model` has an encoder, frozen."""
    encoder = encoder_of(model)
    return encoder is not None and not encoder.trainable


def phases(first_epoch: int, epochs: int, frozen_epochs: int) -> list[tuple[int, int, bool]]:
    """(initial_epoch, epochs, encoder frozen) of each `fit` that trains epochs `first_epoch` .. `epochs` - 1
    when the first `frozen_epochs` epochs train with a frozen encoder."""
    bounds = [(first_epoch, min(frozen_epochs, epochs), True), (max(first_epoch, frozen_epochs), epochs, False)]
    return [(start, end, frozen) for start, end, frozen in bounds if start < end]


def set_encoder_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze (`trainable` False: weights fixed, batch norms in inference mode) or unfreeze the encoder."""
    encoder = encoder_of(model)
    if encoder is None:
        raise ValueError(f"{model.name} has no layer named {ENCODER!r} (a pretrained encoder) to freeze")
    encoder.trainable = trainable


def transfer_state(source: keras.optimizers.Optimizer, target: keras.optimizers.Optimizer) -> int:
    """Copy into the built `target` the value of each variable of `source` with the same path (Keras'
    counters aside: `adam_1/iteration` is `adam/iteration`); returns how many were copied."""
    values = {comparable_path(variable.path): variable for variable in source.variables}
    copied = 0
    for variable in target.variables:
        match = values.get(comparable_path(variable.path))
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(match.value)
            copied += 1
    return copied


def scale_encoder_learning_rate(optimizer: keras.optimizers.Optimizer, model: keras.Model,
                                scale: float) -> keras.optimizers.Optimizer:
    """`optimizer` (unbuilt) as one of its class, with its settings, that steps the variables of `model`'s encoder
    at `scale` x its learning rate; itself when `scale` is 1."""
    if scale == 1.0:
        return optimizer
    encoder = encoder_of(model)
    if encoder is None:
        raise ValueError(f"{model.name} has no encoder whose learning rate to scale")
    base = type(optimizer)
    scaled = type(base.__name__, (ScaledLearningRate, base), {}).from_config(optimizer.get_config())
    scaled.scaled_paths, scaled.scale = frozenset(v.path for v in encoder.weights), float(scale)
    return scaled


class ScaledLearningRate:
    """Mixed in before a Keras optimizer class: the variables whose paths are in `scaled_paths` step at `scale` x
    the learning rate (the scale of each is fixed when the optimizer is built)."""

    scaled_paths: frozenset = frozenset()
    scale: float = 1.0

    def build(self, variables):
        super().build(variables)
        self.scales = [self.scale if v.path in self.scaled_paths else 1.0 for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        scale = self.scales[self._get_variable_index(variable)]
        super().update_step(gradient, variable, learning_rate if scale == 1.0 else learning_rate * scale)
