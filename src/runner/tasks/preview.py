"""`task=preview`: a PNG grid of training pairs exactly as the model would see them (patches, augmentation)."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import builders, pictures
from ..schema import Config

log = logging.getLogger(__name__)


def preview(config: Config) -> str:
    """Write `output_dir/augmentations.png` with `tracking.num_predictions` rows; train nothing."""
    splits = builders.make_splits(config)
    count = config.tracking.num_predictions
    batches = builders.make_training_batches(config, splits, count)
    path = pictures.save_augmentation_grid(batches.unbatch(), count, Path(config.output_dir))
    log.info("wrote %s (augment=%s)", path, config.augment.name)
    return str(path)
