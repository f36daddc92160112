"""Summarise what nnU-Net v2's planner decided, as a compact JSON to compare unetlab's planner against.

    python experiments/planning/nnunet_reference.py PREPROCESSED_DIR [-o nnunet_reference.json]
        [--timing TIMING_FILE] [--datasets Dataset501_EM2D ...]

PREPROCESSED_DIR is nnU-Net's nnUNet_preprocessed folder after `nnUNetv2_extract_fingerprint` and
`nnUNetv2_plan_experiment` (default: $nnUNet_preprocessed). For each DatasetXXX_NAME/ holding
nnUNetPlans.json and dataset_fingerprint.json, the output has the dataset-level facts (transpose,
median spacing and shape, median relative size after cropping to the non-zero region, the foreground
intensity statistics per channel) and, per configuration (2d, 3d_fullres, 3d_lowres where planned), the
normalisation, spacing, median size, patch and batch size and the network topology. Derived fields:
pool_per_axis (the number of stride-2 stages per axis) and patch_aspect (patch edges over the smallest
one). All axes are in nnU-Net's order after transpose_forward (3D: the lowest-resolution axis first,
i.e. z for the datasets of make_datasets.py; 2D: the two in-plane axes).

--timing reads lines "ID fingerprint rc=0 15.2s plan rc=0 4.8s [--verify_dataset_integrity]" (as
/tmp/nnunet-ref/run_planner.sh writes them) into seconds_fingerprint / seconds_plan (or
seconds_fingerprint_with_verify). These are wall-clock seconds of the whole commands, start-up
included, with 2 worker processes. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
INTENSITY_KEYS = ("mean", "median", "std", "percentile_00_5", "percentile_99_5")


def _round(value, digits: int = 6):
    """Round floats to `digits` significant digits, recursively; leave the rest."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    return value


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def dumps(value, level: int = 0) -> str:
    """JSON with one key per line, but lists and dicts of scalars on one line (short, diffable)."""
    if isinstance(value, dict) and any(isinstance(v, (dict, list)) for v in value.values()):
        pad = " " * (level + 1)
        items = [f"{pad}{json.dumps(k)}: {dumps(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * level + "}"
    return json.dumps(value)


def summarise_configuration(config: dict) -> dict:
    arch = config["architecture"]["arch_kwargs"]
    strides = [list(s) for s in arch["strides"]]
    patch = list(config["patch_size"])
    return {
        "normalization_schemes": config["normalization_schemes"],
        "use_mask_for_norm": config["use_mask_for_norm"],
        "spacing": config["spacing"],
        "median_image_size_in_voxels": config["median_image_size_in_voxels"],
        "patch_size": patch,
        "patch_aspect": [p / min(patch) for p in patch],
        "batch_size": config["batch_size"],
        "batch_dice": config.get("batch_dice"),
        "n_stages": arch["n_stages"],
        "strides": strides,
        "pool_per_axis": [sum(1 for s in strides if s[axis] == 2) for axis in range(len(patch))],
        "kernel_sizes": [list(k) for k in arch["kernel_sizes"]],
        "features_per_stage": list(arch["features_per_stage"]),
        "network_class_name": config["architecture"]["network_class_name"].rsplit(".", 1)[-1],
    }


def summarise_dataset(folder: Path, plans_name: str = "nnUNetPlans") -> dict:
    plans = json.loads((folder / f"{plans_name}.json").read_text())
    fingerprint = json.loads((folder / "dataset_fingerprint.json").read_text())
    dataset_json_path = folder / "dataset.json"
    dataset = json.loads(dataset_json_path.read_text()) if dataset_json_path.is_file() else {}
    channels = dataset.get("channel_names", {})
    intensity = {}
    for index, stats in fingerprint["foreground_intensity_properties_per_channel"].items():
        key = f"{index}:{channels[index]}" if index in channels else index
        intensity[key] = {k: stats[k] for k in INTENSITY_KEYS}
    spacings, shapes = fingerprint["spacings"], fingerprint["shapes_after_crop"]
    entry = {
        "numTraining": dataset.get("numTraining", len(spacings)),
        "channel_names": channels,
        "labels": dataset.get("labels"),
        "file_ending": dataset.get("file_ending"),
        "image_reader_writer": plans.get("image_reader_writer"),
        "transpose_forward": plans["transpose_forward"],
        "original_median_spacing_after_transp": plans["original_median_spacing_after_transp"],
        "original_median_shape_after_transp": plans["original_median_shape_after_transp"],
        "fingerprint": {
            "median_relative_size_after_cropping": fingerprint["median_relative_size_after_cropping"],
            # in the file's axis order (before transpose_forward)
            "median_spacing": [_median([s[a] for s in spacings]) for a in range(len(spacings[0]))],
            "median_shape_after_crop": [_median([s[a] for s in shapes]) for a in range(len(shapes[0]))],
            "foreground_intensity_properties_per_channel": intensity,
        },
        "configurations": {c: summarise_configuration(plans["configurations"][c])
                           for c in CONFIGURATIONS if c in plans["configurations"]},
        "cascade": "3d_cascade_fullres" in plans["configurations"],
    }
    return entry


def read_timing(paths: list[Path]) -> dict[str, dict[str, float]]:
    """{"501": {"seconds_fingerprint": .., "seconds_plan": ..}}; a line ending in --verify_dataset_integrity
    gives seconds_fingerprint_with_verify (the integrity check runs inside the fingerprint command)."""
    pattern = re.compile(r"^(\d+) fingerprint rc=(\d+) ([\d.]+)s plan rc=(\d+) ([\d.]+)s\s*(\S*)")
    timing: dict[str, dict[str, float]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            match = pattern.match(line.strip())
            if not match or match.group(2) != "0" or match.group(4) != "0":
                continue
            entry = timing.setdefault(f"{int(match.group(1)):03d}", {})
            if match.group(6) == "--verify_dataset_integrity":
                entry["seconds_fingerprint_with_verify"] = float(match.group(3))
            else:
                entry["seconds_fingerprint"] = float(match.group(3))
                entry["seconds_plan"] = float(match.group(5))
    return timing


def nnunet_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("nnunetv2")
    except (ImportError, PackageNotFoundError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preprocessed", type=Path, nargs="?", default=os.environ.get("nnUNet_preprocessed"))
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("nnunet_reference.json"))
    parser.add_argument("--timing", type=Path, nargs="+", default=[], help="timing files of run_planner.sh")
    parser.add_argument("--datasets", nargs="+", help="dataset folder names (default: all with plans)")
    parser.add_argument("--plans-name", default="nnUNetPlans")
    parser.add_argument("--note", default=None, help="free text stored under 'note'")
    args = parser.parse_args(argv)
    if args.preprocessed is None:
        parser.error("give PREPROCESSED_DIR or set nnUNet_preprocessed")
    folders = sorted(p for p in args.preprocessed.iterdir()
                     if p.is_dir() and (p / f"{args.plans_name}.json").is_file()
                     and (p / "dataset_fingerprint.json").is_file())
    if args.datasets:
        folders = [p for p in folders if p.name in args.datasets]
    if not folders:
        raise SystemExit(f"no dataset with {args.plans_name}.json and dataset_fingerprint.json in {args.preprocessed}")
    timing = read_timing(args.timing)
    out = {"nnunetv2_version": nnunet_version(), "plans_name": args.plans_name}
    if args.note:
        out["note"] = args.note
    out["datasets"] = {}
    for folder in folders:
        entry = summarise_dataset(folder, args.plans_name)
        match = re.match(r"Dataset(\d+)_", folder.name)
        if match and match.group(1) in timing:
            entry["timing"] = timing[match.group(1)]
        out["datasets"][folder.name] = _round(entry)
    args.output.write_text(dumps(out) + "\n")
    print(args.output)


if __name__ == "__main__":
    main(sys.argv[1:])
