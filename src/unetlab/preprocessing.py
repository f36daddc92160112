"""What a trained model expects of its input, saved beside the model and applied at prediction time.

`Preprocessing` travels with every checkpoint as `preprocessing.json`, so
`evaluate`, `predict` and the exported MLflow model read images exactly as
training did (channels, normalisation, dataset statistics, class count) without
the user repeating it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

NORMALIZE = ("scale", "minmax", "zscore", "dataset")
_EPSILON = 1e-6


@dataclass
class Preprocessing:
    channels: int
    num_classes: int
    normalize: str = "scale"
    mean: list[float] | None = None
    std: list[float] | None = None
    tile_size: int = 256
    resize: int | None = None  # trained on whole images resized to resize x resize: predict at that scale

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A decoded image (H, W[, C]) of any dtype -> float32 (H, W, C) as the model saw it in training."""
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise DataError(f"image must have shape (height, width[, channels]). Received: shape={array.shape}")
        if array.shape[-1] != self.channels:
            raise DataError(f"image has {array.shape[-1]} channels but the model expects {self.channels}")
        return normalize(to_unit_range(array), self.normalize, self.mean, self.std)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Preprocessing":
        return cls(**json.loads(Path(path).read_text()))


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """Integers scaled by their type's range to [0, 1] (as tf.io.decode_image does); floats kept."""
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32)


def normalize(array: np.ndarray, mode: str, mean=None, std=None) -> np.ndarray:
    """`scale` keeps [0, 1]; `minmax` / `zscore` per image; `dataset` uses training mean/std per channel."""
    if mode == "scale":
        return array
    if mode == "minmax":
        low, high = array.min(), array.max()
        return (array - low) / max(high - low, _EPSILON)
    if mode == "zscore":
        return (array - array.mean()) / max(array.std(), _EPSILON)
    if mode == "dataset":
        if mean is None or std is None:
            raise DataError("normalize='dataset' needs the training statistics (mean and std)")
        return (array - np.asarray(mean, np.float32)) / np.maximum(np.asarray(std, np.float32), _EPSILON)
    raise DataError(f"data.normalize must be one of {', '.join(NORMALIZE)}. Received: normalize={mode!r}")
