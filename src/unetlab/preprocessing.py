"""What a trained model expects of its input (and the postprocessing chosen for its output), saved beside
the model and applied at prediction time.

`Preprocessing` travels with every checkpoint as `preprocessing.json`, so
`evaluate`, `predict` and the exported MLflow model read images exactly as
training did (channels, normalisation, dataset statistics, class count) without
the user repeating it. A data source builds it (`unetlab.data.Splits.preprocessing`), so
nothing downstream re-derives it from the data settings. Normalisation is
`unetlab.data.normalize.normalize_image`, the function the training pipeline calls.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .errors import DataError


@dataclass
class Preprocessing:
    """How to feed an image to the model: `channels`, `num_classes` and `normalize` (with the training
    `mean`/`std` for "dataset") as in training; `tile_size`, the model's input size in training;
    `resize`, the size whole images were resized to in training (None: predict at full resolution)."""

    FILENAME: ClassVar[str] = "preprocessing.json"  # its name beside a model's checkpoints

    channels: int
    num_classes: int
    normalize: str = "scale"
    mean: list[float] | None = None
    std: list[float] | None = None
    tile_size: int = 256
    resize: int | None = None  # trained on whole images resized to resize x resize: predict at that scale
    invert_masks: bool | None = None  # trained with zero mask pixels as class 1 (ISBI 2012); None: not recorded
    # The postprocessing chosen on the validation images at the end of training (`predict.postprocess=auto`,
    # `unetlab.postprocess.Choice.as_dict`: {"method": "watershed", threshold, h, sigma} or "none"); None: none chosen.
    postprocess: dict | None = None
    # The decision layer fitted on the validation split after training (`unetlab.decision.Decision.as_dict`:
    # per-class temperatures, the binary threshold and its objective); None: probabilities as predicted, 0.5.
    decision: dict | None = None
    # A model trained on planned patches of preprocessed cases (data=nnunet; `unetlab.volume_inference`):
    # the patch (one size per spatial axis), the spacing cases were resampled to, and each channel's
    # normalisation ("zscore" or "ct", with the CT statistics). None: a 2D model of images.
    patch_size: list[int] | None = None
    target_spacing: list[float] | None = None
    normalization: list[str] | None = None
    ct_statistics: list[list[float]] | None = None

    @property
    def planned(self) -> bool:
        """Whether the model predicts planned cases (`unetlab.volume_inference`), not images."""
        return self.patch_size is not None

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A decoded image (H, W[, C]) of any dtype -> float32 (H, W, C) as the model saw it in training."""
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise DataError(f"image must have shape (height, width[, channels]). Received: shape={array.shape}")
        if array.shape[-1] != self.channels:
            raise DataError(f"image has {array.shape[-1]} channels but the model expects {self.channels}")
        from .data.normalize import normalize_image  # TensorFlow: imported when an image is prepared

        return np.asarray(normalize_image(to_unit_range(array), self.normalize, self.mean, self.std), np.float32)

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
    return array.astype(np.float32)  # bool: 0/1
