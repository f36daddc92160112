"""`task=preview`: a PNG grid of training pairs exactly as the model would see them (patches, augmentation),
and the model the config builds: its line and its layer table."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import builders, pictures, tracking
from ..schema import Config

log = logging.getLogger(__name__)


def preview(config: Config) -> str:
    """Write `output_dir/augmentations.png` with `tracking.num_predictions` rows, and `model_summary.txt`, the
    layer table of the model the config builds (also printed); train nothing."""
    from unetlab.models import layer_table

    splits = builders.make_splits(config)
    count = config.tracking.num_predictions
    batches = builders.make_training_batches(config, splits, count)
    path = pictures.save_augmentation_grid(batches.unbatch(), count, Path(config.output_dir))
    log.info("wrote %s (augment=%s)", path, config.augment.name)
    model = builders.build_model(config)
    table = layer_table(model)
    (Path(config.output_dir) / tracking.MODEL_SUMMARY).write_text(table)
    print(table, end="")
    log.info("%s; its layer table: %s", builders.describe_model(model, config), Path(config.output_dir) / tracking.MODEL_SUMMARY)
    return str(path)
