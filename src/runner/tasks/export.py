"""`task=export`: register a trained model in the MLflow Model Registry, or write a TF SavedModel."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import keras

from unetlab.checkpoints import Checkpoints
from unetlab.errors import ConfigError
from unetlab.models import with_input_size
from unetlab.preprocessing import Preprocessing

from .. import tracking
from ..model_source import load_model_source
from ..schema import Config, ExportFormat
from ..serving import log_segmentation_model

log = logging.getLogger(__name__)


def export(config: Config) -> dict:
    """`export.format=mlflow`: a pyfunc model (preprocessing + tiled prediction) registered as
    `export.name`; `export.format=saved_model`: a SavedModel with a `serve` signature in `export.output`."""
    loaded = load_model_source(config)
    if loaded.preprocessing.planned and config.export.format is ExportFormat.mlflow:
        raise ConfigError(f"export.format=mlflow packs image prediction; {loaded.description} was trained on planned "
                          "patches (data=nnunet), which task=predict segments: use export.format=saved_model for "
                          "the network")
    if config.export.format is ExportFormat.saved_model:
        output = Path(config.export.output)
        model, size = saved_model_input(loaded)
        model.export(str(output), format="tf_saved_model", verbose=False)
        log.info("wrote a TensorFlow SavedModel (signature 'serve', input %s) to %s", size, output)
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


def saved_model_input(loaded) -> tuple:
    """The model a SavedModel is exported from, and its input size in words: any height and width
    under TensorFlow; under JAX (jax2tf needs shapes it can check) the training tile size."""
    if keras.backend.backend() != "jax":
        return loaded.model, "of any height and width"
    size = loaded.preprocessing.resize or loaded.preprocessing.tile_size
    return with_input_size(loaded.model, size), f"{size}x{size}"
