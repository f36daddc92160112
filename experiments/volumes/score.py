"""Score predicted masks against labels, per case and on average, in millimetres (`unetlab.volume_metrics`):
`python experiments/volumes/score.py PREDICTIONS LABELS [--tolerance 1.0]`; files paired by name (NIfTI)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from unetlab.data.volume_files import read_volume
from unetlab.volume_metrics import case_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("labels", type=Path)
    parser.add_argument("--tolerance", type=float, default=1.0, help="surface Dice tolerance in mm")
    parser.add_argument("--num-classes", type=int, default=1)
    args = parser.parse_args()
    per_case = {}
    for label_path in sorted(args.labels.glob("*.nii.gz")):
        prediction_path = args.predictions / label_path.name
        if not prediction_path.is_file():
            continue
        truth, prediction = read_volume(label_path), read_volume(prediction_path)
        per_case[label_path.name] = case_scores(prediction.array, truth.array, truth.spacing, args.num_classes,
                                                args.tolerance)
        print(label_path.name, {key: round(value, 4) for key, value in per_case[label_path.name].items()})
    mean = {key: float(np.mean([scores[key] for scores in per_case.values()])) for key in next(iter(per_case.values()))}
    print(json.dumps({"cases": len(per_case), "mean": {key: round(value, 4) for key, value in mean.items()}}))


if __name__ == "__main__":
    main()
