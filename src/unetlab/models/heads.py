"""The 1x1 heads of every model family: the head (`head`), and deep supervision's auxiliary heads.

Deep supervision (Lee et al. 2015, "Deeply-Supervised Nets", arXiv:1409.5185; as nnU-Net v2 trains,
Isensee et al. 2021, Nature Methods 18:203): a 1x1 head on every decoder stage but the lowest, each
trained against the labels at its stage's resolution.

The heads' losses are weighted 1, 1/2, 1/4, ... from the full-resolution head down and normalised to sum
to 1 (`supervision_weights`). nnU-Net v2 also builds a head on the lowest decoder stage and weights it 0;
here it is left out (it never trains), so a network counts its (C + 1) K parameters fewer. The labels of
a stage with stride s along an axis are the full-resolution labels sampled every s pixels along it
(nearest neighbour, nnU-Net's order-0 downsampling of segmentations; per axis, for anisotropic strides
and volumes alike), weight maps too. Metrics are those of the
full-resolution head only, under their usual names (`dice`, `val_dice`).

`DeepSupervision` is the training model: a functional model whose first output is the network's
head and whose other outputs are the auxiliary heads. Its `inference_model` shares its layers and has
the first output alone: that is what checkpoints, the logged model and exports hold.
"""

from __future__ import annotations

import functools

import keras
from keras import ops

from .layers_nd import layers_for


def head(x, num_classes: int, name: str = "head"):
    """The 1x1 (1x1x1) convolution to the classes: sigmoid for one, softmax for more, computed in float32."""
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers_for(x).conv(num_classes, 1, activation=activation, dtype="float32", name=name)(x)


class DeepSupervision(keras.Model):
    """A functional model with outputs [head, auxiliary heads...] (each at a lower resolution), trained
    on the `supervision_weights`-weighted sum of the compiled loss of each head against its labels."""

    def __init__(self, inputs, outputs, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.supervision_weights = supervision_weights(len(outputs))

    @functools.cached_property  # built once; kept in __dict__, out of Keras' layer tracking (its variables are ours)
    def inference_model(self) -> keras.Model:
        """The network with its full-resolution head only (the auxiliary heads dropped), sharing the layers."""
        return keras.Model(self.inputs[0], self.outputs[0], name=self.name)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses = [weight * self.loss(downsampled(y, prediction), prediction, sample_weight)
                  for weight, prediction in zip(self.supervision_weights, y_pred)]
        losses += [ops.cast(ops.sum(loss), "float32") for loss in self.losses]  # regularisers, once
        return ops.sum(ops.stack(losses))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred[0], sample_weight)


def supervision_weights(count: int) -> list[float]:
    """The loss weights of `count` heads, full resolution first: 1, 1/2, 1/4, ... normalised to sum to 1."""
    weights = [0.5**i for i in range(count)]
    return [weight / sum(weights) for weight in weights]


def downsampled(labels, prediction):
    """`labels` (B, *spatial, C), 2D or 3D, sampled every L // l pixels along each spatial axis, L its size and
    l `prediction`'s there (nearest neighbour)."""
    full, low = ops.shape(labels), ops.shape(prediction)
    steps = tuple(slice(None, None, full[axis] // low[axis]) for axis in range(1, len(full) - 1))
    return labels[(slice(None), *steps, slice(None))]


def supervised_model(inputs, stages: list, num_classes: int, deep_supervision: bool, name: str) -> keras.Model:
    """The model of the decoder `stages` (full resolution first): the head (`head`) on the
    first; with `deep_supervision`, a `DeepSupervision` model with a head on each of the others but the
    lowest too (`head_aux1`, `head_aux2`, ...)."""
    output = head(stages[0], num_classes)
    if not deep_supervision or len(stages) <= 2:
        return keras.Model(inputs, output, name=name)
    auxiliary = [head(stage, num_classes, name=f"head_aux{i}") for i, stage in enumerate(stages[1:-1], 1)]
    return DeepSupervision(inputs, [output, *auxiliary], name=name)


def inference_model(model: keras.Model) -> keras.Model:
    """`model` without auxiliary heads: a `DeepSupervision` model's `inference_model`, else `model` itself."""
    return model.inference_model if isinstance(model, DeepSupervision) else model


def supervision_note(model: keras.Model) -> str:
    """What deep supervision adds to `model`, for the line that says what was built: '' without it, else
    '; deep supervision: 3 auxiliary heads (+195 params, dropped at inference)'."""
    if not isinstance(model, DeepSupervision):
        return ""
    extra = model.count_params() - model.inference_model.count_params()
    heads = len(model.outputs) - 1
    return f"; deep supervision: {heads} auxiliary head{'s' if heads > 1 else ''} (+{extra:,} params, dropped at inference)"


def count_line(model: keras.Model) -> str:
    """'7.8M params (7,846,081)' of `model`'s inference network, and its `supervision_note`."""
    params = inference_model(model).count_params()
    return f"{params / 1e6:.1f}M params ({params:,}){supervision_note(model)}"
