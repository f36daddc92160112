"""The trained U-Net as an MLflow pyfunc model: preprocessing + tiled prediction -> mask.

`mlflow.pyfunc.load_model("models:/NAME/1").predict(image)` takes one image
(H, W, C) float32 of any height and width, with values scaled to [0, 1] as a
decoder gives them (uint8 / 255, uint16 / 65535), and returns its class-id mask
(H, W) uint8, applying the rest of the preprocessing the run was trained with, and the postprocessing
its training chose (`predict.postprocess=auto`, recorded in its preprocessing.json). Params `tta`
(none | flips | d4), `overlap`, `tile_size` and `postprocess` (auto: the model's choice | none) may be
passed at predict time.

That call unpickles the python model (cloudpickle) and so runs code from the model store: only
for stores you trust. unetlab itself never does: `model_uri=` reads the `.keras` file and
`preprocessing.json` that the MLmodel file lists (`logged_files`) and loads them in Keras safe mode.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import numpy as np

from unetlab.errors import ConfigError

ARTIFACT_PATH = "model"
ARTIFACTS = ("model", "preprocessing")  # the pyfunc artifacts: the .keras file and its preprocessing.json


class SegmentationModel(mlflow.pyfunc.PythonModel):
    """Keras U-Net + its preprocessing, predicting whole images tile by tile."""

    def load_context(self, context) -> None:
        import keras

        from unetlab.models import with_any_input_size
        from unetlab.preprocessing import Preprocessing

        model = keras.saving.load_model(context.artifacts["model"], compile=False, safe_mode=True)
        self.model = with_any_input_size(model)
        self.preprocessing = Preprocessing.load(context.artifacts["preprocessing"])

    def predict(self, context, model_input, params=None):
        from unetlab.decision import Decision, check_threshold
        from unetlab.inference import predict_image
        from unetlab.postprocess import cut, from_record

        params = params or {}
        probabilities = predict_image(self.model, np.asarray(model_input), self.preprocessing,
                                      tile_size=int(params.get("tile_size", 0)) or None,
                                      overlap=float(params.get("overlap", 0.5)), tta=str(params.get("tta", "none")))
        postprocess = str(params.get("postprocess", "auto"))
        if postprocess not in ("auto", "none"):
            raise ValueError(f"params postprocess must be auto (the model's choice) or none. Received: {postprocess!r}")
        watershed = from_record(self.preprocessing.postprocess) if postprocess == "auto" else None
        decision = Decision.from_record(self.preprocessing.decision)
        threshold = float(params.get("threshold", -1.0))  # negative: the model's fitted one (unetlab.decision)
        if threshold >= 0:
            check_threshold(threshold, "params threshold")
            decision = dataclasses.replace(decision, threshold=threshold)
        if postprocess == "none":
            decision = dataclasses.replace(decision, rules=())
        return decision.classes(cut(probabilities, watershed)).astype(np.uint8)


def logged_files(mlmodel: dict) -> dict[str, str]:
    """{artifact: its path inside the logged model} for `ARTIFACTS`, from the model's parsed MLmodel file."""
    listed = mlmodel["flavors"]["python_function"]["artifacts"]
    return {name: listed[name]["path"] for name in ARTIFACTS}


def pip_requirements(environment: dict[str, str] | None = None) -> list[str]:
    """The logged model's pip requirements: unetlab's core dependencies, read from its installed
    metadata (extras left out), those whose environment markers hold for `environment` (this
    interpreter's by default; keys as in PEP 508, e.g. `sys_platform`), each pinned to the version
    installed here (the one the model was trained and logged with) or, where it is not installed,
    as the metadata states it. On Linux x86_64 that is `tensorflow-cpu`, elsewhere `tensorflow`.

    All core dependencies, not only the predict path's: the model bundles the whole of `unetlab`
    and `runner` (`code_paths`), so whatever they import is covered, with no second list to keep.
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        requirements = metadata.requires("unetlab") or []
    except metadata.PackageNotFoundError:
        raise ConfigError("unetlab is not installed (run from its sources?): the logged model's pip requirements "
                          "are read from its package metadata; install it with `pip install -e .`") from None
    pinned = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate({**(environment or {}), "extra": ""}):
            continue  # another platform's, or an extra's (test, docs, ray)
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        try:
            pinned.append(f"{requirement.name}{extras}=={metadata.version(requirement.name)}")
        except metadata.PackageNotFoundError:
            pinned.append(f"{requirement.name}{extras}{requirement.specifier}")
    return pinned


def log_segmentation_model(model_path: Path, preprocessing_path: Path, registered_name: str | None = None):
    """Log (and optionally register) the pyfunc model in the active MLflow run; returns its ModelInfo."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    from unetlab.preprocessing import Preprocessing

    preprocessing = Preprocessing.load(preprocessing_path)
    size = preprocessing.tile_size
    example = np.zeros((size, size, preprocessing.channels), np.float32)
    signature = ModelSignature(  # one image of any height and width in, its class-id mask out
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, preprocessing.channels))]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1))]),
        params=ParamSchema([ParamSpec("tta", "string", "none"), ParamSpec("overlap", "double", 0.5),
                            ParamSpec("tile_size", "long", 0),  # 0: the training size
                            ParamSpec("postprocess", "string", "auto"),  # auto: the model's recorded choice
                            ParamSpec("threshold", "double", -1.0)]),  # negative: the model's fitted threshold
    )
    source = Path(__file__).resolve().parents[1]  # src/: bundle our packages with the model
    return mlflow.pyfunc.log_model(
        name=ARTIFACT_PATH,
        python_model=SegmentationModel(),
        artifacts={"model": str(model_path), "preprocessing": str(preprocessing_path)},
        code_paths=[str(source / "unetlab"), str(source / "runner")],
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_name,
    )
