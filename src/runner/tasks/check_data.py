"""`task=check_data`: the integrity check of image/mask folders, also run before every training."""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from ..schema import Config
from ..settings import to_config

log = logging.getLogger(__name__)


def check_data(cfg: DictConfig) -> dict:
    """Print the summary and every problem of the configured folders; exit 1 when training would be wrong."""
    config = to_config(cfg)
    reports = folder_reports(config)
    for report in reports:
        print(report.format_report())
    if not all(report.ok for report in reports):
        sys.exit(1)
    return {"pairs": sum(len(report.pairs) for report in reports),
            "fingerprint": reports[0].summary["fingerprint"]}


def folder_reports(config: Config) -> list:
    """Integrity reports of data.images/data.masks and, when given, data.val_images/data.val_masks."""
    from unetlab.data.checks import check_folders

    data = config.data
    common = dict(channels=data.channels, num_classes=data.num_classes, ignore_index=data.ignore_index,
                  palette=data.palette)
    reports = [check_folders(data.images, data.masks, **common)]
    if data.val_images is not None:
        reports.append(check_folders(data.val_images, data.val_masks, images_key="data.val_images",
                                     masks_key="data.val_masks", **common))
    return reports


def checked_fingerprint(config: Config) -> str:
    """Refuse a broken dataset (DataError naming the files) and return its content fingerprint.

    The check has already hashed every file; its digests are reused, not read again.
    """
    import hashlib

    from unetlab.data.checks import raise_if_broken

    digests = [raise_if_broken(report).summary["fingerprint"] for report in folder_reports(config)]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256(" ".join(digests).encode()).hexdigest()[:16]  # training + validation folders
