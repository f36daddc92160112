"""Where a trained model comes from: `run_id=`, `model_uri=models:/NAME/VERSION` or `checkpoint=PATH.keras`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
from mlflow.exceptions import MlflowException

from unetlab.callbacks import Checkpoints
from unetlab.errors import ConfigError, DataError
from unetlab.preprocessing import Preprocessing

from .schema import Config
from .tracking import CHECKPOINTS

BEST_MODEL = f"{CHECKPOINTS}/{Checkpoints.BEST}"
PREPROCESSING = f"{CHECKPOINTS}/{Preprocessing.FILENAME}"


@dataclass
class LoadedModel:
    model: object  # keras.Model
    preprocessing: Preprocessing
    source_run_id: str | None
    description: str


def load_model_source(config: Config) -> LoadedModel:
    """Load the model named by the config's single model source, with the preprocessing it was trained with."""
    if config.run_id:
        return _from_run(config.run_id, config.tracking.uri)
    if config.model_uri:
        return _from_registry(config.model_uri, config.tracking.uri)
    return _from_checkpoint(Path(config.checkpoint))


def _from_run(run_id: str, tracking_uri: str) -> LoadedModel:
    client = mlflow.MlflowClient(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise DataError(f"run_id={run_id} is not a run in tracking.uri={tracking_uri}") from None
    with tempfile.TemporaryDirectory(prefix="unetlab-run-") as target:  # the model is loaded into memory
        try:
            model_path = Path(client.download_artifacts(run_id, BEST_MODEL, target))
            preprocessing_path = Path(client.download_artifacts(run_id, PREPROCESSING, target))
        except (MlflowException, OSError):
            raise DataError(f"run_id={run_id} has no {BEST_MODEL} artifact (is it a finished task=train run?)") from None
        loaded = _from_checkpoint(model_path, preprocessing_path)
    loaded.source_run_id, loaded.description = run_id, f"run {run_id}"
    return loaded


def _from_registry(model_uri: str, tracking_uri: str) -> LoadedModel:
    mlflow.set_tracking_uri(tracking_uri)
    try:
        pyfunc = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as error:
        raise DataError(f"model_uri={model_uri} cannot be loaded from tracking.uri={tracking_uri}: "
                        f"{str(error).splitlines()[0]}") from None
    wrapped = pyfunc.unwrap_python_model()
    return LoadedModel(wrapped.model, wrapped.preprocessing, pyfunc.metadata.run_id, model_uri)


def _from_checkpoint(path: Path, preprocessing_path: Path | None = None) -> LoadedModel:
    if path.suffix != ".keras" or not path.is_file():
        raise ConfigError(f"checkpoint={str(path)!r} is not a .keras file")
    model = keras.saving.load_model(path, compile=False)
    preprocessing_path = preprocessing_path or path.with_name(Preprocessing.FILENAME)
    if preprocessing_path.is_file():
        preprocessing = Preprocessing.load(preprocessing_path)
    else:  # a bare model file: read what we can from its shapes
        _, height, _, channels = model.input_shape
        preprocessing = Preprocessing(channels=channels, num_classes=model.output_shape[-1], tile_size=height or 256)
    return LoadedModel(model, preprocessing, None, str(path))
