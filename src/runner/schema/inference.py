"""The inference keys' schemas: `predict` (with its postprocessing), `evaluate` and `export`, rules as in
`runner.schema.groups`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import List, Optional

from omegaconf import MISSING

from unetlab import names

from .groups import choice_enum, require

TestTimeAugmentation = choice_enum("TestTimeAugmentation", names.TTA)
Postprocess = choice_enum("Postprocess", names.POSTPROCESS)
PredictFormat = choice_enum("PredictFormat", names.PREDICT_FORMATS)
Calibration = choice_enum("Calibration", names.CALIBRATION)
DecisionObjective = choice_enum("DecisionObjective", ("none",) + names.DECISION_OBJECTIVES)
DecisionPostprocess = choice_enum("DecisionPostprocess", names.DECISION_POSTPROCESS)


class ExportFormat(Enum):
    mlflow = "mlflow"  # a registered pyfunc model
    saved_model = "saved_model"  # the whole of task=predict in one TensorFlow graph
    onnx = "onnx"  # that graph converted to ONNX (tf2onnx)
    network = "network"  # a SavedModel of the bare network


ExportInputDtype = choice_enum("ExportInputDtype", names.EXPORT_INPUT_DTYPES)


@dataclass
class WatershedCandidatesConfig:  # predict.postprocess=auto: the grid unetlab.postprocess.choose searches
    threshold: List[float] = MISSING
    h: List[float] = MISSING
    sigma: List[float] = MISSING

    def __post_init__(self) -> None:
        _check_watershed(self.threshold, self.h, self.sigma, "predict.watershed.candidates.")


@dataclass
class WatershedConfig:  # unetlab.postprocess.Watershed
    threshold: float = MISSING
    h: float = MISSING
    sigma: float = MISSING
    candidates: WatershedCandidatesConfig = MISSING

    def __post_init__(self) -> None:
        _check_watershed([self.threshold], [self.h], [self.sigma], "predict.watershed.")


def _check_watershed(thresholds: list, hs: list, sigmas: list, prefix: str) -> None:
    """Each watershed setting in its range; a list of candidates must not be empty."""
    for name, values in (("threshold", thresholds), ("h", hs), ("sigma", sigmas)):
        require(len(values) > 0, f"{prefix}{name}", values, "a non-empty list")
    for value in thresholds:
        require(0.0 <= value < 1.0, f"{prefix}threshold", value, "in [0, 1)")
    for value in hs:
        require(value > 0, f"{prefix}h", value, "> 0 (pixels)")
    for value in sigmas:
        require(value >= 0, f"{prefix}sigma", value, ">= 0 (pixels)")


@dataclass
class PredictConfig:
    input: Optional[str] = None
    output: str = MISSING
    tile_size: Optional[int] = None
    overlap: float = MISSING
    batch_size: int = MISSING
    tta: TestTimeAugmentation = MISSING
    save_probabilities: bool = MISSING
    save_overlay: bool = MISSING
    format: PredictFormat = MISSING
    postprocess: Postprocess = MISSING
    watershed: WatershedConfig = MISSING

    def __post_init__(self) -> None:
        require(0.0 <= self.overlap < 1.0, "predict.overlap", self.overlap, "in [0, 1)")
        require(self.batch_size >= 1, "predict.batch_size", self.batch_size, ">= 1")
        require(self.tile_size is None or self.tile_size >= 8, "predict.tile_size", self.tile_size, ">= 8 or null")


@dataclass
class EvaluateConfig:
    output: str = MISSING
    num_worst: int = MISSING
    thresholds: List[float] = MISSING  # the challenge scores' grid: [MIN, MAX, STEP] (unetlab.challenge)

    def __post_init__(self) -> None:
        from unetlab.challenge import thresholds

        require(len(self.thresholds) == 3, "evaluate.thresholds", list(self.thresholds), "[MIN, MAX, STEP]")
        thresholds(*self.thresholds, key="evaluate.thresholds")


@dataclass
class DecisionConfig:  # unetlab.decision: fitted on the validation split after training, stored with the model
    calibrate: Calibration = MISSING
    objective: DecisionObjective = MISSING
    threshold: Optional[float] = None  # predict/evaluate/export: overrides the model's fitted threshold
    postprocess: DecisionPostprocess = MISSING
    min_sizes: List[int] = MISSING

    def __post_init__(self) -> None:
        from unetlab.decision import check_threshold

        check_threshold(self.threshold, "decision.threshold")
        require(len(self.min_sizes) > 0 and all(size >= 1 for size in self.min_sizes), "decision.min_sizes",
                list(self.min_sizes), "a non-empty list of sizes >= 1 (pixels or voxels)")


@dataclass
class CompareConfig:  # task=compare (unetlab.comparison)
    metric: str = MISSING
    experiment: Optional[str] = None  # instead of run_id=[A,B]: its two best evaluated runs
    resamples: int = MISSING
    confidence: float = MISSING
    output: str = MISSING

    def __post_init__(self) -> None:
        from unetlab.comparison import MIN_RESAMPLES

        require(self.resamples >= MIN_RESAMPLES, "compare.resamples", self.resamples, f">= {MIN_RESAMPLES}")
        require(0.0 < self.confidence < 1.0, "compare.confidence", self.confidence, "in (0, 1), e.g. 0.95")


@dataclass
class ExportConfig:
    name: Optional[str] = None
    format: ExportFormat = MISSING
    output: str = MISSING
    input_dtype: ExportInputDtype = MISSING
