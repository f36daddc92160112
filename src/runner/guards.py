"""Guards on honesty: a warning line and an MLflow tag where a result looks better than it is.

- A model that predicts one class for every validation pixel (`degenerate_prediction=true`):
  on foreground-heavy data such a model still scores a high Dice.
- Evaluation images that the source run trained or validated on (`data_overlap`), found by the
  sha256 of their bytes (a copy under another name is still found), against the digests each
  training run logs as `data/image_digests.json`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from . import tracking

log = logging.getLogger(__name__)

IMAGE_DIGESTS = "data/image_digests.json"


def check_predictions(model, batches) -> bool:
    """Warn and tag `degenerate_prediction=true` when `model` predicts one class for every pixel
    of `batches` (the validation data); return whether it did."""
    from unetlab.visualize import predicted_class_map

    present: set[int] = set()
    for images, *_ in batches:
        probabilities = np.asarray(model.predict_on_batch(np.asarray(images)))  # NumPy: any Keras backend
        present |= set(np.unique(predicted_class_map(probabilities)).tolist())
        if len(present) > 1:
            return False
    if not present:
        return False
    log.warning("the best model predicts class %d for every validation pixel: a degenerate model, whatever its "
                "scores say (tag degenerate_prediction=true)", present.pop())
    tracking.retry_locked(mlflow.set_tag, "degenerate_prediction", "true")
    return True


def log_image_digests(splits, image_digests: dict[str, dict[str, str]]) -> None:
    """Log the sha256 of every training and validation image of the run (`IMAGE_DIGESTS`), from
    the digests of each side's folder ({"train": {file name: sha256}, "val": ...})."""
    sides = {side: {name: image_digests[side][name] for name in names if name in image_digests[side]}
             for side, names in (("train", splits.train_files), ("val", splits.val_files))}
    mlflow.log_dict(sides, IMAGE_DIGESTS)


def check_overlap(source_run_ids: list[str], image_digests: dict[str, str],
                  tracking_uri: str | None = None) -> dict[str, str]:
    """Warn when evaluation images ({file name: sha256}) were among the source runs' training or
    validation images; return the tags to set (`data_overlap`, `data_overlap_files`), or none."""
    client = mlflow.MlflowClient(tracking_uri)
    seen: dict[str, set[str]] = {}
    for run_id in source_run_ids:
        with tempfile.TemporaryDirectory(prefix="unetlab-digests-") as target:
            try:
                sides = json.loads(Path(client.download_artifacts(run_id, IMAGE_DIGESTS, target)).read_text())
            except (MlflowException, OSError):  # no digests: a run from before they were logged, or generated data
                continue
        for side, digests in sides.items():
            for digest in digests.values():
                seen.setdefault(digest, set()).add(side)
    overlap = sorted(name for name, digest in image_digests.items() if digest in seen)
    if not overlap:
        return {}
    trained = sum("train" in seen[image_digests[name]] for name in overlap)
    log.warning("%d of %d evaluation images are in the source run's data (%d trained on, %d validated on), "
                "e.g. %s: these scores are not held-out scores (tag data_overlap)", len(overlap), len(image_digests),
                trained, len(overlap) - trained, ", ".join(overlap[:3]))
    return {"data_overlap": f"{len(overlap)}/{len(image_digests)}", "data_overlap_files": ",".join(overlap)[:4000]}
