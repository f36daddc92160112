"""`task=export`: register a trained model in the MLflow Model Registry, or write it as one self-contained
file: a TF SavedModel or an ONNX model that takes a raw image of any size and returns its final mask."""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
from pathlib import Path

import keras

from unetlab.checkpoints import Checkpoints
from unetlab.errors import ConfigError
from unetlab.models import with_input_size
from unetlab.preprocessing import Preprocessing

from .. import builders, decision_settings, tracking
from ..model_source import load_model_source
from ..schema import Config, ExportFormat
from ..serving import log_segmentation_model

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"  # export.format=onnx: the file in export.output
METADATA_FILE = "metadata.json"  # beside the exported model: what it is and how it decides


def export(config: Config) -> dict:
    """`export.format=mlflow`: a pyfunc model (preprocessing + tiled prediction) registered as `export.name`;
    `saved_model` / `onnx`: the whole of task=predict in one graph (`unetlab.graph_inference`) written to
    `export.output`; `network`: a SavedModel of the bare network (any Keras backend)."""
    formats = config.export.format
    if formats is ExportFormat.onnx:
        check_onnx_installed()
    if formats in (ExportFormat.saved_model, ExportFormat.onnx) and keras.backend.backend() != "tensorflow":
        raise ConfigError(f"export.format={formats.value} builds one TensorFlow graph around the network: run it with "
                          f"KERAS_BACKEND=tensorflow (a model trained under {keras.backend.backend()} loads there)")
    loaded = load_model_source(config)
    if loaded.preprocessing.planned and formats is not ExportFormat.network:
        raise ConfigError(f"export.format={formats.value} exports image models; {loaded.description} was trained on "
                          "planned patches (data=nnunet), which task=predict segments: use export.format=network "
                          "for the network")
    if formats in (ExportFormat.saved_model, ExportFormat.onnx):
        return export_graph(config, loaded)
    if formats is ExportFormat.network:
        output = Path(config.export.output)
        model, size = network_input(loaded)
        model.export(str(output), format="tf_saved_model", verbose=False)
        log.info("wrote the bare network as a TensorFlow SavedModel (signature 'serve', input %s) to %s", size, output)
        return {"output": str(output)}

    tags = {"task": "export", "model_source": loaded.description}
    if loaded.source_run_id:
        tags["source_run_id"] = loaded.source_run_id
    with tempfile.TemporaryDirectory(prefix="unetlab-export-") as staging, tracking.tracked_run(config.tracking, tags):
        model_path, preprocessing_path = Path(staging) / Checkpoints.BEST, Path(staging) / Preprocessing.FILENAME
        loaded.model.save(model_path)
        loaded.preprocessing.save(preprocessing_path)
        info = log_segmentation_model(model_path, preprocessing_path, config.export.name)
    version = info.registered_model_version
    log.info("registered models:/%s/%s (%s)", config.export.name, version, loaded.description)
    return {"model_uri": f"models:/{config.export.name}/{version}"}


def check_onnx_installed() -> None:
    """export.format=onnx needs tf2onnx (and onnxruntime to run the result): a one-line error with the install
    command, before any model is loaded."""
    from unetlab.graph_inference import ONNX_INSTALL

    try:
        importlib.import_module("tf2onnx")
    except ImportError:
        raise ConfigError(f"export.format=onnx needs tf2onnx, which is not installed: {ONNX_INSTALL} "
                          "(or pip install tf2onnx onnxruntime)") from None


def export_graph(config: Config, loaded) -> dict:
    """The self-contained model: input `image` (H, W, C) of export.input_dtype, any height and width; outputs
    `mask` (H, W) uint8 class ids and `probabilities` (H, W, K) float32, as task=predict makes them with the
    same predict.* settings and the model's decision layer (calibration, threshold, component rules)."""
    import tensorflow as tf

    from unetlab.graph_inference import frozen, save_onnx, serving_function
    from unetlab.models import with_any_input_size

    if builders.postprocessing(config, loaded.preprocessing) is not None:
        raise ConfigError(f"predict.postprocess={config.predict.postprocess.value} applies a watershed "
                          "(scikit-image), which has no TensorFlow op: export with predict.postprocess=none "
                          "(the decision layer's component rules, decision.postprocess, do export)")
    decision = decision_settings.decision(config, loaded.preprocessing)
    settings = builders.prediction_settings(config)
    model = with_any_input_size(loaded.model)
    serve = serving_function(model, loaded.preprocessing,
                             input_dtype=config.export.input_dtype.value, decision=decision, **settings)
    metadata = {"run_id": loaded.source_run_id, "model_source": loaded.description,
                "input": {"name": "image", "shape": ["height", "width", loaded.preprocessing.channels],
                          "dtype": config.export.input_dtype.value},
                "outputs": {"mask": "(height, width) uint8 class ids",
                            "probabilities": "(height, width, K) float32, calibrated (K = 1: of class 1)"},
                "num_classes": loaded.preprocessing.num_classes, "spacing": None,
                "preprocessing": {key: getattr(loaded.preprocessing, key) for key in
                                  ("normalize", "mean", "std", "tile_size", "resize", "invert_masks")},
                "prediction": {key: getattr(value, "value", value) for key, value in settings.items()},
                "decision": decision.as_dict()}
    output = Path(config.export.output)
    output.mkdir(parents=True, exist_ok=True)
    if config.export.format is ExportFormat.onnx:
        path = save_onnx(serve, output / ONNX_FILE, metadata={"unetlab": json.dumps(metadata)})
    else:
        module = tf.Module()  # the weights are constants of the graph: TF Serving's loader finds them
        module.serve = frozen(serve)
        module.metadata = tf.function(lambda: {"metadata": tf.constant(json.dumps(metadata))}, input_signature=[])
        tf.saved_model.save(module, str(output), signatures={"serving_default": module.serve,
                                                             "metadata": module.metadata})
        path = output
    (output / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    log.info("wrote %s to %s: a raw %s image of any size -> its mask (decision: %s; tiles %s, overlap %.2f, tta %s)",
             "an ONNX model" if config.export.format is ExportFormat.onnx else "a TensorFlow SavedModel", path,
             config.export.input_dtype.value, decision.describe(),
             settings["tile_size"] or loaded.preprocessing.resize or loaded.preprocessing.tile_size,
             settings["overlap"], settings["tta"])
    return {"output": str(path)}


def network_input(loaded) -> tuple:
    """The model a bare-network SavedModel is exported from, and its input size in words: any height and width
    under TensorFlow; under JAX (jax2tf needs shapes it can check) the training tile size."""
    if keras.backend.backend() != "jax":
        return loaded.model, "of any height and width"
    size = loaded.preprocessing.resize or loaded.preprocessing.tile_size
    return with_input_size(loaded.model, size), f"{size}x{size}"
