"""`unetlab.inference.predict_image` as one TensorFlow graph, for a self-contained SavedModel or ONNX file.

`predict_image` prepares a decoded image (`Preprocessing.apply`), cuts it into mirror-padded tiles,
runs the model on batches of them (with test-time augmentation) and blends the tile predictions with
Gaussian weights, in NumPy around a Keras model. `probability_graph` does the same steps in TensorFlow
ops, on an image whose height and width are known only when it arrives (`tf.shape`), so the traced
function carries the whole pipeline and runs where neither unetlab nor Keras is installed:

    serve = serving_function(model, preprocessing, tile_size=256, tta="flips")
    module = tf.Module()
    module.model, module.serve = model, serve  # the module tracks the weights that `serve` reads
    tf.saved_model.save(module, "exported", signatures={"serving_default": serve})
    save_onnx(serve, "model.onnx")

    tf.saved_model.load("exported").serve(image)["probabilities"]  # == predict_image(model, image, ...)

How each step of `predict_tiled` is expressed without Python loops over tiles:

- the mirror padding (NumPy's "reflect", repeated where the padding exceeds the image) is an index
  map, `_reflect`, so no padded copy of the image is made; a batch of tiles is one `tf.gather_nd`;
- the window starts (`unetlab.inference.window_starts`) are the same integer formula on tensors;
- a TTA transform (NumPy's `rot90` and `flip` of `predict_tiled`, applied once to index grids) is a
  pair of index tables: the tiles are gathered already transformed, and the predictions gathered back;
- the batches are one `tf.while_loop` (an ONNX `Loop`) with a step per (batch, TTA transform) and no
  control flow inside it, so the network appears once in the graph; after a batch's last transform its
  Gaussian-weighted mean prediction, and the weights, are added up in the batch's bounding box and go
  into one (height, width, K + 1) canvas by `tf.tensor_scatter_nd_add` (ONNX `ScatterND` with
  `reduction="add"`, opset 16 and later) with indices that are all different.

The probabilities agree with `predict_image`'s to rounding, not bit for bit: the network runs inside
another graph (measured: at most 4e-7 apart for the test networks, 2.5e-6 for a depth-4 U-Net with 16
filters, whose untrained logits are large), and the tiles of a batch are summed before they reach the
canvas. Each step copies the canvas once (TensorFlow does not update a loop variable in place), which
costs little beside the network: 5% on a 2048 x 2048 image with 256-pixel tiles on a CPU.

The Keras model is called inside the graph, so it needs the TensorFlow backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .decision import Decision
from .errors import ConfigError, DataError
from .graph_decision import calibrated, decided
from .inference import TTA_TRANSFORMS, check_tiling_arguments, gaussian_weights, tile_output
from .names import EXPORT_INPUT_DTYPES, check_choice

ONNX_INSTALL = 'pip install "unetlab[onnx]"'  # (or: pip install tf2onnx onnxruntime)


def probability_graph(model, preprocessing, *, tile_size: int | None = None, overlap: float = 0.5,
                      batch_size: int = 4, tta: str = "none") -> Callable[[tf.Tensor], tf.Tensor]:
    """A function of TensorFlow ops (call it inside a `tf.function`): a decoded image (H, W, C) or (H, W)
    of any dtype `Preprocessing.apply` accepts, as it was decoded (integers are scaled to [0, 1] here, as
    `unetlab.preprocessing.to_unit_range` does) -> probabilities (H, W, K) float32, those of
    `predict_image(model, image, preprocessing, tile_size=..., overlap=..., batch_size=..., tta=...)`.

    The settings are checked, and the model's output size for a tile found (one eager call on a zero
    tile, as `predict_tiled` does), when this is called; H and W stay open until the graph runs.
    """
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"probability_graph calls the Keras model inside a TensorFlow graph and needs "
                          f"KERAS_BACKEND=tensorflow. Received: backend={keras.backend.backend()!r}")
    size = preprocessing.resize
    tile_size = tile_size or size or preprocessing.tile_size
    check_tiling_arguments(tile_size, overlap, batch_size, tta)
    tiled = _tiled_graph(model, channels=preprocessing.channels, tile_size=tile_size, overlap=overlap,
                         batch_size=batch_size, tta=tta)
    mode, mean, std = preprocessing.normalize, preprocessing.mean, preprocessing.std
    temperature = Decision.from_record(preprocessing.decision).temperature

    def probabilities(image: tf.Tensor) -> tf.Tensor:
        image = tf.convert_to_tensor(image)
        if image.shape.rank == 2:
            image = image[..., None]
        if image.shape.rank != 3:
            raise DataError(f"image must have shape (height, width[, channels]). Received: shape={image.shape}")
        if image.shape[-1] is not None and image.shape[-1] != preprocessing.channels:
            raise DataError(f"image has {image.shape[-1]} channels but the model expects {preprocessing.channels}")
        array = _normalize(_to_unit_range(image), mode, mean, std)
        if not size:
            return calibrated(tiled(array), temperature)
        small = tf.image.resize(array, [size, size], method="bilinear")
        return calibrated(tf.image.resize(tiled(small), tf.shape(array)[:2], method="bilinear"), temperature)

    return probabilities


def serving_function(model, preprocessing, *, input_dtype: str = "uint8", decision: Decision | None = None,
                     **settings) -> tf.types.experimental.GenericFunction:
    """A `tf.function` of one image, `TensorSpec([None, None, C], input_dtype, name="image")`, returning
    `{"probabilities": (H, W, K) float32}` as `probability_graph(model, preprocessing, **settings)` computes
    them, and with a `decision` (`unetlab.decision.Decision`, its temperatures those of `preprocessing`) the
    mask it makes of them, `"mask"`: (H, W) uint8 class ids (`unetlab.graph_decision.decided`).
    `input_dtype`: uint8 or uint16 (scaled to [0, 1] by 255 or 65535) or float32 (used as given).

    The function reads the model's variables: to save it, put it and the model on one `tf.Module`
    (see the module docstring) so the SavedModel tracks them.
    """
    check_choice("input_dtype", input_dtype, EXPORT_INPUT_DTYPES)
    graph = probability_graph(model, preprocessing, **settings)
    signature = [tf.TensorSpec([None, None, preprocessing.channels], tf.as_dtype(input_dtype), name="image")]

    channels = model.output_shape[-1]

    @tf.function(input_signature=signature)
    def serve(image):
        probabilities = graph(image)
        if decision is None:
            return {"probabilities": probabilities}
        return {"probabilities": probabilities, "mask": tf.cast(decided(probabilities, decision, channels), tf.uint8)}

    return serve


def frozen(function) -> tf.types.experimental.GenericFunction:
    """`function` (a `tf.function` with an input signature) with the variables it reads turned into constants:
    a SavedModel of it holds no variables, so the TF1-style session loaders of TF Serving and
    `saved_model_cli run` serve it too (they do not find variables read inside a `tf.while_loop`)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = function.get_concrete_function()
    constant = convert_variables_to_constants_v2(concrete)

    @tf.function(input_signature=function.input_signature)
    def serve(*inputs):
        return tf.nest.pack_sequence_as(concrete.structured_outputs, constant(*inputs))

    return serve


def save_onnx(function, path, *, opset: int = 17, metadata: dict[str, str] | None = None) -> Path:
    """Convert `function` (a `tf.function` with an input signature, e.g. `serving_function`'s) to ONNX
    with tf2onnx and write it to `path`; inputs and outputs keep their names ("image", "probabilities"),
    `metadata` goes into the model's metadata_props (onnxruntime: `session.get_modelmeta().custom_metadata_map`).
    Needs opset >= 16 (ScatterND with reduction) and the `onnx` extra: pip install "unetlab[onnx]".
    An op tf2onnx cannot convert raises a ConfigError naming it (tf2onnx itself only logs it).

    The network weights are then read from the file's constants inside the tile loop (see
    `_use_constants_in_loops`), so onnxruntime prepares its convolutions once, not at every step.
    """
    try:
        import tf2onnx
    except ImportError as error:
        raise ConfigError(f"save_onnx needs tf2onnx, which is not installed: {ONNX_INSTALL} "
                          f"(or pip install tf2onnx onnxruntime)") from error
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < 16:
        raise ConfigError(f"opset must be an integer >= 16 (ScatterND with reduction='add'). Received: opset={opset!r}")
    if getattr(function, "input_signature", None) is None:
        raise ConfigError("save_onnx needs a tf.function with an input_signature (serving_function returns one). "
                          f"Received: function={function!r}")
    import onnx  # a dependency of tf2onnx

    model_proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    try:  # tf2onnx logs the ops it cannot convert and leaves them in the graph
        onnx.checker.check_model(model_proto)
    except onnx.checker.ValidationError as error:
        raise ConfigError(f"tf2onnx could not convert the graph to ONNX opset {opset}: "
                          f"{str(error).strip().splitlines()[0]}") from error
    _use_constants_in_loops(model_proto.graph)
    if metadata:
        onnx.helper.set_model_props(model_proto, metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model_proto, str(path))
    return path


def _use_constants_in_loops(graph, outer: frozenset = frozenset()) -> None:
    """Let the bodies of `graph`'s ONNX Loops (nested ones too) read the constants they use from the
    enclosing graph, in place.

    tf2onnx turns every input of a TensorFlow while loop into a loop-carried variable, the frozen network
    weights included, so onnxruntime sees them as values that may change from one iteration to the next:
    it transposes every convolution kernel (HWIO -> OIHW) at every step and cannot use its pre-packed
    (NCHWc) convolutions. A carried variable whose initial value is a constant and which the body passes
    on unchanged is that constant: uses of it in the body are renamed to the constant of the enclosing
    graph (ONNX subgraphs may read outer names), which onnxruntime folds and pre-packs once. The
    carried variable itself stays (unused), so the Loop's signature does not change.
    """
    from onnx import AttributeProto

    constants = outer | {init.name for init in graph.initializer} | {
        node.output[0] for node in graph.node if node.op_type == "Constant"}
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type != AttributeProto.GRAPH:
                continue
            if node.op_type == "Loop" and attribute.name == "body":
                body = attribute.g
                produced = {output: inner for inner in body.node for output in inner.output}

                def source(name: str) -> str:  # through Identity nodes
                    while name in produced and produced[name].op_type == "Identity":
                        name = produced[name].input[0]
                    return name

                carried = list(node.input[2:])
                passed = [value.name for value in body.input[2:2 + len(carried)]]
                results = [value.name for value in body.output[1:1 + len(carried)]]
                renames = {inner: initial for initial, inner, result in zip(carried, passed, results)
                           if initial in constants and source(result) == inner}
                if renames:
                    _rename_inputs(body, renames)
            _use_constants_in_loops(attribute.g, constants)


def _rename_inputs(graph, renames: dict) -> None:
    """Rename the inputs of every node of `graph` and of its subgraphs that are keys of `renames`."""
    from onnx import AttributeProto

    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in renames:
                node.input[index] = renames[name]
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                _rename_inputs(attribute.g, renames)


# --- normalisation (Preprocessing.apply) ------------------------------------------------------------

def _to_unit_range(image: tf.Tensor) -> tf.Tensor:
    """`unetlab.preprocessing.to_unit_range` on a tensor: integers / their type's maximum, floats and bools kept."""
    dtype = image.dtype
    values = tf.cast(image, tf.float32)
    if dtype.is_integer:
        return values / tf.constant(float(np.iinfo(dtype.as_numpy_dtype).max), tf.float32)
    return values


def _normalize(image: tf.Tensor, mode: str, mean, std) -> tf.Tensor:
    """`unetlab.data.normalize.normalize_image`, itself TensorFlow ops."""
    from .data.normalize import normalize_image

    return tf.cast(normalize_image(image, mode, mean, std), tf.float32)


# --- tiled prediction (predict_tiled) ---------------------------------------------------------------

def _tiled_graph(model, *, channels: int, tile_size: int, overlap: float, batch_size: int,
                 tta: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """`predict_tiled(model, image, ...)` for a float32 image tensor (H, W, C) -> (H, W, K).

    One while loop, with a step per (batch of tiles, TTA transform) and no control flow inside it (tf2onnx
    loses static shapes in a `tf.cond` or a nested loop, and then cannot convert the convolutions). The
    network appears once in the graph, whatever `tta` is, and each call sees one batch, as in
    `predict_tiled`: `min(batch_size, tiles)` tiles, the last batch filled up with copies of its last tile,
    whose predictions are dropped. A transform is a pair of index tables: the tiles are gathered from the
    image already transformed, and the predictions gathered back. The batch's sum over the transforms is
    carried from step to step and blended into the canvas at its last transform (earlier steps add zeros).
    """
    out, num_classes = tile_output(model, tile_size, channels)
    margin = (tile_size - out) // 2
    stride = max(1, int(out * (1.0 - overlap)))
    forward_table, inverse_table = _transform_tables(tta, tile_size, out)
    transforms = len(forward_table)
    gaussian = gaussian_weights(out)[..., None]  # (out, out, 1)

    def tiled(image: tf.Tensor) -> tf.Tensor:
        # Constants are made here, in the caller's graph: tensors made eagerly outside it would be captured
        # as extra inputs of the function, which tf2onnx leaves as inputs of the ONNX graph.
        forward_offsets, inverse_offsets = tf.constant(forward_table), tf.constant(inverse_table)
        weights = tf.constant(gaussian)
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        canvas_height, canvas_width = tf.maximum(height, out), tf.maximum(width, out)
        top, left = (canvas_height - height) // 2, (canvas_width - width) // 2
        # Rows/columns of the padded canvas (margin + canvas + margin) -> rows/columns of the image.
        row_source = _reflect(tf.range(canvas_height + 2 * margin) - (margin + top), height)
        column_source = _reflect(tf.range(canvas_width + 2 * margin) - (margin + left), width)
        row_starts = _window_starts(canvas_height, out, stride)
        column_starts = _window_starts(canvas_width, out, stride)
        columns = tf.size(column_starts)
        count = tf.size(row_starts) * columns
        batch = tf.minimum(batch_size, count)  # one batch shape, as in predict_tiled
        steps = (count + batch - 1) // batch * transforms

        def blend(accumulated, probabilities, rows, cols, used):
            """Add the Gaussian-weighted probabilities (batch, out, out, K) of the first `used` tiles, and the
            weights, to the canvas (H, W, K + 1).

            The tiles are first added up by padding in their bounding box, which then goes to the canvas in one
            scatter whose indices are all different: the tiles of a batch overlap, and onnxruntime's ScatterND
            adds the duplicate indices of one call from several threads at once, losing some of the sums.
            """
            contributions = tf.concat([probabilities * weights,
                                       tf.broadcast_to(weights, tf.shape(probabilities[..., :1]))], axis=-1)
            top_row, left_column = tf.reduce_min(rows), tf.reduce_min(cols)
            box_height = tf.reduce_max(rows) - top_row + out
            box_width = tf.reduce_max(cols) - left_column + out
            box = tf.zeros(tf.stack([box_height, box_width, num_classes + 1]), tf.float32)
            for slot in range(batch_size):  # in predict_tiled's order
                index = tf.minimum(slot, batch - 1)
                above, before = rows[index] - top_row, cols[index] - left_column
                update = tf.where(slot < used, contributions[index], tf.zeros_like(contributions[index]))
                box += tf.pad(update, [[above, box_height - out - above], [before, box_width - out - before], [0, 0]])
            where = tf.stack(tf.meshgrid(top_row + tf.range(box_height), left_column + tf.range(box_width),
                                         indexing="ij"), axis=-1)
            return tf.tensor_scatter_nd_add(accumulated, where, box)

        def step(index, accumulated, total):
            first, transform = index // transforms * batch, index % transforms
            tile = tf.minimum(first + tf.range(batch), count - 1)
            rows = tf.gather(row_starts, tile // columns)  # (batch,) window starts on the canvas
            cols = tf.gather(column_starts, tile % columns)
            offsets = forward_offsets[transform]  # (tile, tile, 2): the tile pixel each input pixel comes from
            source = tf.stack([tf.gather(row_source, rows[:, None, None] + offsets[..., 0]),
                               tf.gather(column_source, cols[:, None, None] + offsets[..., 1])], axis=-1)
            prediction = tf.cast(model(tf.gather_nd(image, source), training=False), tf.float32)
            flat = tf.reshape(prediction, [batch, out * out, num_classes])
            prediction = tf.reshape(tf.gather(flat, inverse_offsets[transform], axis=1),
                                    [batch, out, out, num_classes])
            used = tf.minimum(count - first, batch)
            if transforms == 1:
                return index + 1, blend(accumulated, prediction, rows, cols, used), total
            total = tf.where(transform == 0, prediction, total + prediction)  # summed in predict_tiled's order
            used = tf.where(transform == transforms - 1, used, 0)  # blend the mean after the last transform
            return index + 1, blend(accumulated, total / transforms, rows, cols, used), total

        start = tf.zeros(tf.stack([canvas_height, canvas_width, num_classes + 1]), tf.float32)
        # The batch's sum over the transforms so far (unused without TTA).
        total = tf.zeros(tf.stack([batch, out, out, num_classes]) if transforms > 1 else [0], tf.float32)
        # An image of a static size (a resized one) gives a static batch; the network's output batch is not.
        invariants = (tf.TensorShape([]), tf.TensorShape([None, None, num_classes + 1]),
                      tf.TensorShape([None, out, out, num_classes] if transforms > 1 else [None]))
        _, accumulated, _ = tf.while_loop(lambda index, *_: index < steps, step, (tf.constant(0), start, total),
                                          shape_invariants=invariants, parallel_iterations=1)
        blended = accumulated[..., :num_classes] / accumulated[..., num_classes:]
        return blended[top:top + height, left:left + width]

    return tiled


def _transform_tables(tta: str, tile_size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """The TTA transforms of `predict_tiled` (`unetlab.inference.TTA_TRANSFORMS`, applied here to index grids,
    so they are the same by construction) as index tables, one row per transform:

    - (T, tile, tile, 2) int32: the (row, column) of the tile that each pixel of forward(tile) comes from;
    - (T, out * out) int32: the flat index into the model's prediction for forward(tile) that each pixel of
      inverse(prediction) comes from.
    """
    transforms = TTA_TRANSFORMS[tta]

    def grid(size: int) -> np.ndarray:  # (1, size, size, 2): every pixel's own (row, column)
        return np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"), axis=-1)[None]

    forward = np.stack([transform(grid(tile_size))[0] for transform, _ in transforms])
    flat = np.arange(out * out).reshape(1, out, out, 1)
    inverse = np.stack([transform(flat)[0, ..., 0].reshape(-1) for _, transform in transforms])
    return forward.astype(np.int32), inverse.astype(np.int32)


def _window_starts(length: tf.Tensor, window: int, stride: int) -> tf.Tensor:
    """`unetlab.inference.window_starts` for a length known when the graph runs -> int32 (count,)."""
    last = tf.cast(length - window, tf.int64)  # >= 0: the canvas is at least one window
    count = (last + stride - 1) // stride + 1  # math.ceil(last / stride) + 1; 1 when last == 0
    index = tf.range(count)
    denominator = tf.maximum(2 * (count - 1), 1)

    def rounded(i):  # round(i * last / (count - 1)), for the first half of the starts
        return (2 * i * last + count - 1) // denominator

    starts = tf.where(index < (count + 1) // 2, rounded(index), last - rounded(count - 1 - index))
    return tf.cast(starts, tf.int32)


def _reflect(index: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """Indices into an axis of `length` of NumPy's `np.pad(mode="reflect")`, repeated reflections included:
    the axis mirrored about its first and last element, with period 2 * (length - 1); a single element
    is repeated."""
    period = tf.maximum(2 * (length - 1), 1)
    folded = tf.math.floormod(index, period)
    return tf.where(folded >= length, period - folded, folded)
