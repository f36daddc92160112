"""`task=preview`: a PNG grid of training pairs exactly as the model would see them (patches, augmentation)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..settings import data_params, to_config
from .train import make_training_batches, save_augmentation_grid

log = logging.getLogger(__name__)


def preview(cfg: DictConfig) -> str:
    """Write `output_dir/augmentations.png` with `tracking.num_predictions` rows; train nothing."""
    config = to_config(cfg)
    from unetlab.data import SOURCES

    splits = SOURCES[config.data.name](seed=config.seed, **data_params(config))
    count = config.tracking.num_predictions
    batches = make_training_batches(config, splits, count)
    path = save_augmentation_grid(batches.unbatch(), count, Path(config.output_dir))
    log.info("wrote %s (augment=%s)", path, config.augment.name)
    return str(path)
