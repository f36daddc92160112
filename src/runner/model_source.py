"""Where a trained model comes from: `run_id=` (or `run_id=[A,B,...]`, an ensemble),
`model_uri=models:/NAME/VERSION` or `checkpoint=PATH.keras`.

Every source ends in `keras.saving.load_model(..., safe_mode=True)` on a `.keras` file and a
`preprocessing.json`: loading a model runs no code from the model store. A registered model's
pickled python model (`runner.serving`) is never unpickled here.
"""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import yaml
from mlflow.exceptions import MlflowException

from unetlab.checkpoints import Checkpoints
from unetlab.errors import ConfigError, DataError
from unetlab.models import with_any_input_size
from unetlab.preprocessing import Preprocessing

from .schema import Config
from .serving import logged_files
from .tracking import CHECKPOINTS, live_run

BEST_MODEL = f"{CHECKPOINTS}/{Checkpoints.BEST}"
PREPROCESSING = f"{CHECKPOINTS}/{Preprocessing.FILENAME}"


@dataclass
class LoadedModel:
    model: object  # keras.Model
    preprocessing: Preprocessing
    source_run_id: str | None
    description: str


def load_model_sources(config: Config) -> list[LoadedModel]:
    """The models of an ensemble, one per run of `run_id=[A,B,...]` (each with its own preprocessing),
    or the one model of `run_id=`, `model_uri=` or `checkpoint=`. The members must agree on
    channels and num_classes."""
    if len(config.run_ids()) < 2:
        return [load_model_source(config)]
    members: list[LoadedModel] = []
    for run_id in config.run_ids():
        member = _from_run(run_id, config.tracking.uri)
        if members:
            _check_same_task(members[0], member)
        members.append(member)
    return members


def _check_same_task(first: LoadedModel, member: LoadedModel) -> None:
    """Two members of an ensemble read the same channels and predict the same classes (of the same meaning)."""
    for key in ("channels", "num_classes", "invert_masks"):
        ours, theirs = getattr(first.preprocessing, key), getattr(member.preprocessing, key)
        if ours != theirs and None not in (ours, theirs):  # None: not recorded (an older model)
            raise ConfigError(f"run_id: runs {first.source_run_id} and {member.source_run_id} cannot form an "
                              f"ensemble: run {first.source_run_id} has {key}={ours}, run "
                              f"{member.source_run_id} has {key}={theirs}")


def describe(members: list[LoadedModel]) -> str:
    """The model's description ('run A', a model URI, a path), or 'ensemble of 3 models: runs A, B, C'."""
    if len(members) == 1:
        return members[0].description
    return f"ensemble of {len(members)} models: runs {', '.join(m.source_run_id for m in members)}"


def source_tags(members: list[LoadedModel]) -> dict[str, str]:
    """MLflow tags naming the models a run used: `model_source`, `ensemble_size`, and `source_run_id`
    (one model from a run) or `ensemble_run_ids` (comma-separated, several)."""
    tags = {"model_source": describe(members), "ensemble_size": str(len(members))}
    if len(members) > 1:
        tags["ensemble_run_ids"] = ",".join(member.source_run_id for member in members)
    elif members[0].source_run_id:
        tags["source_run_id"] = members[0].source_run_id
    return tags


def load_model_source(config: Config) -> LoadedModel:
    """Load the model named by the config's single model source, with the preprocessing it was trained with."""
    if len(config.run_ids()) > 1:
        raise ConfigError(f"run_id=[{','.join(config.run_ids())}] names {len(config.run_ids())} runs where one "
                          "model is needed")
    if config.run_id:
        return _from_run(config.run_ids()[0], config.tracking.uri)
    if config.model_uri:
        return _from_registry(config.model_uri, config.tracking.uri)
    return _from_checkpoint(Path(config.checkpoint))


def _from_run(run_id: str, tracking_uri: str) -> LoadedModel:
    client = mlflow.MlflowClient(tracking_uri)
    live_run(run_id, tracking_uri, "run_id")
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
    """The registered version's `.keras` file and preprocessing, downloaded from its logged model
    (where its MLmodel file says they are); the pickled python model beside them is left alone."""
    def cannot(reason: str) -> DataError:
        return DataError(f"model_uri={model_uri} cannot be loaded from tracking.uri={tracking_uri}: {reason}")

    client = mlflow.MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="unetlab-registry-") as target:  # the model is loaded into memory
        try:
            version = _registered_version(client, model_uri)
            location = client.get_model_version_download_uri(version.name, version.version)
            mlmodel = yaml.safe_load(_download(location, "MLmodel", target, tracking_uri).read_text())
            files = {name: _download(location, path, target, tracking_uri)
                     for name, path in logged_files(mlmodel).items()}
        except MlflowException as error:
            raise cannot(str(error).splitlines()[0]) from None
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            raise cannot("it is not a unetlab model (no MLmodel listing a model and its preprocessing)") from None
        if files["model"].suffix != ".keras":
            raise cannot(f"its model file {files['model'].name} is not a .keras file")
        loaded = _load(files["model"], files["preprocessing"])
    loaded.source_run_id, loaded.description = version.run_id, model_uri
    return loaded


def _registered_version(client: mlflow.MlflowClient, model_uri: str):
    """The ModelVersion that models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest names."""
    prefix = "models:/"
    name, at, alias = model_uri[len(prefix):].partition("@")
    if model_uri.startswith(prefix) and name and at:
        return client.get_model_version_by_alias(name, alias)
    name, _, version = name.rpartition("/")
    if not model_uri.startswith(prefix) or not name or not version:
        raise ConfigError(f"model_uri={model_uri} must be {prefix}NAME/VERSION, {prefix}NAME@ALIAS or "
                          f"{prefix}NAME/latest")
    if version == "latest":
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise MlflowException(f"registered model {name!r} has no versions")
        return max(versions, key=lambda found: int(found.version))
    return client.get_model_version(name, version)


def _download(location: str, path: str, target: str, tracking_uri: str) -> Path:
    """One file of the artifacts at `location` (a path or URI) into the folder `target`."""
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/{path}", dst_path=target,
                                                    tracking_uri=tracking_uri))


def _from_checkpoint(path: Path, preprocessing_path: Path | None = None) -> LoadedModel:
    """A `.keras` file and its preprocessing: `preprocessing_path`, or the `preprocessing.json`
    beside it (training writes one there). A bare model file is refused: its normalisation and
    training scale cannot be read from the network, and guessing them predicts garbage silently."""
    if path.suffix == ".keras" and not path.exists():
        raise DataError(f"checkpoint={str(path)!r} does not exist (a run's best model: run_id=RUN_ID, or the "
                        "checkpoints/best.keras of its output folder)")
    if path.suffix != ".keras" or not path.is_file():
        raise ConfigError(f"checkpoint={str(path)!r} is not a .keras file")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"checkpoint={str(path)!r} is not a .keras file (not a zip archive: cut short or "
                          "another format)")
    preprocessing_path = preprocessing_path or path.with_name(Preprocessing.FILENAME)
    if not preprocessing_path.is_file():
        raise ConfigError(f"checkpoint={str(path)!r} has no {Preprocessing.FILENAME} beside it ({preprocessing_path} "
                          "is missing): copy the training run's checkpoints/preprocessing.json there, or use "
                          "run_id=RUN_ID")
    return _load(path, preprocessing_path)


def _load(path: Path, preprocessing_path: Path) -> LoadedModel:
    """A `.keras` file in Keras safe mode, for inputs of any height and width (any `predict.tile_size`
    the network's size rule allows; training saved it for its image size), with its preprocessing."""
    model = with_any_input_size(keras.saving.load_model(path, compile=False, safe_mode=True))
    return LoadedModel(model, Preprocessing.load(preprocessing_path), None, str(path))
