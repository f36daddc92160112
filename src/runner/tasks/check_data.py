"""`task=check_data`: the integrity check of image/mask folders or of an nnU-Net dataset, also run before
every training."""

from __future__ import annotations

import sys

from .. import builders
from ..schema import Config, NNUNetDataConfig


def check_data(config: Config) -> dict:
    """Print the summary and every problem of the configured folders (or nnU-Net dataset); exit 1 when
    training would be wrong."""
    if isinstance(config.data, NNUNetDataConfig):
        return check_nnunet_dataset(config.data.root)
    reports = builders.folder_reports(config)
    for report in reports:
        print(report.format_report())
    if not all(report.ok for report in reports):
        sys.exit(1)
    return {"pairs": sum(len(report.pairs) for report in reports),
            "fingerprint": reports[0].summary["fingerprint"]}


def check_nnunet_dataset(root: str) -> dict:
    """Every case of an nnU-Net dataset read once; its summary and every problem printed, one line each."""
    from unetlab.data.nnunet_raw import check_raw_dataset, read_raw_dataset

    dataset = read_raw_dataset(root)
    problems = check_raw_dataset(dataset)
    print(f"{dataset.root.name}: {len(dataset.cases)} training and {len(dataset.test_cases)} test case(s), "
          f"{dataset.dims}D, channels {', '.join(dataset.channel_names.values())}, labels "
          f"{', '.join(f'{name}={value}' for name, value in dataset.labels.items())}: "
          f"{len(problems)} problem(s)")
    for problem in problems:
        print(f"  {problem}")
    if problems:
        sys.exit(1)
    return {"cases": len(dataset.cases), "problems": 0}
