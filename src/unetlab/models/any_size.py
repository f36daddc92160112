"""A trained functional model re-instantiated for inputs of any height and width.

Training builds the U-Net for its image size (the loss, the label size of a valid-padding net and
the compiled graph want it fixed), so its `.keras` file has a fixed input. Tiled prediction wants
any tile that fits the network's divisibility rule (`unetlab.geometry.unet_output_size`): the same
layers and weights with the input's height and width left open. A valid-padding U-Net's crops do
not depend on the input size (each level trims a fixed number of pixels), so it carries over too.
A SavedModel exported under JAX needs the input size fixed again (`with_input_size`): jax2tf cannot
prove a skip and its upsampled partner equal for an unknown size.
"""

from __future__ import annotations

import copy

import keras


def with_any_input_size(model: keras.Model) -> keras.Model:
    """`model` (functional or sequential) with its inputs' height and width unknown (None); see
    `with_input_size`."""
    return with_input_size(model, None)


def with_input_size(model: keras.Model, size: int | None) -> keras.Model:
    """`model` re-instantiated for `size` x `size` inputs (None: any height and width), sharing nothing
    with it but the weights' values; `model` itself when its inputs already have that size, or when
    its config lists no layers (a subclassed model)."""
    try:
        config = copy.deepcopy(model.get_config())
    except NotImplementedError:
        return model
    inputs = [layer["config"] for layer in (config or {}).get("layers", ()) if layer["class_name"] == "InputLayer"]
    other = [layer for layer in inputs if any(dim != size for dim in layer["batch_shape"][1:-1])]
    if not other:
        return model
    for layer in other:
        shape = layer["batch_shape"]
        layer["batch_shape"] = [shape[0], *([size] * (len(shape) - 2)), shape[-1]]
    resized = type(model).from_config(config)
    resized.set_weights(model.get_weights())
    return resized
