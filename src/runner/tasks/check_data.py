"""`task=check_data`: the integrity check of image/mask folders, also run before every training."""

from __future__ import annotations

import sys

from .. import builders
from ..schema import Config


def check_data(config: Config) -> dict:
    """Print the summary and every problem of the configured folders; exit 1 when training would be wrong."""
    reports = builders.folder_reports(config)
    for report in reports:
        print(report.format_report())
    if not all(report.ok for report in reports):
        sys.exit(1)
    return {"pairs": sum(len(report.pairs) for report in reports),
            "fingerprint": reports[0].summary["fingerprint"]}
