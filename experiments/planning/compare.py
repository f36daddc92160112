"""Our planner's decisions beside nnU-Net v2's on the same raw datasets: the table of docs/planning.md.

    python experiments/planning/compare.py RAW_DIR [--reference experiments/planning/nnunet_reference.json]

RAW_DIR holds the DatasetXXX_Name folders (experiments/planning/make_datasets.py writes them; nnU-Net's own
planner ran on them for nnunet_reference.json, in a separate venv). Our planner runs as a pure function on
an 8 GB GPU device (nnU-Net's memory reference), so even the patch and batch, which nnU-Net derives from its
memory estimate, are comparable; on a CPU unetlab starts from a smaller patch and measures instead. Prints a
markdown table (decisions where they differ are marked) and the properties pass's throughput.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from unetlab.planning.cases import nnunet_cases
from unetlab.planning.planner import Device, configuration, make_plan, normalization_schemes
from unetlab.planning.properties import dataset_properties

NNUNET_SCHEMES = {"ZScoreNormalization": "zscore", "CTNormalization": "ct"}
GPU = Device("gpu", 8 * 2**30, "an 8 GB GPU (nnU-Net's reference)")


def ours(properties: dict) -> dict:
    """{configuration: decisions} of our planner, nnU-Net's configuration names."""
    plan = make_plan(properties, GPU, memory_bytes=GPU.memory_bytes)
    modalities = [c["modality"] for c in properties["channels"]]
    schemes = normalization_schemes(modalities, properties["median_relative_size_after_cropping"])[0]
    result = {}
    for name, dims in (("2d", 2), ("3d_fullres", 3)):
        if dims > properties["dims"]:
            continue
        config = configuration(properties, GPU, dims=dims, memory_bytes=GPU.memory_bytes)
        result[name] = {"normalization": list(schemes), "spacing": list(config["spacing"]),
                        "patch_size": list(config["topology"].patch_size), "pooling": list(config["topology"].pooling),
                        "stages": len(config["topology"].strides), "batch_size": config["batch_size"]}
    assert plan.patch_size == tuple(result["3d_fullres" if properties["dims"] == 3 else "2d"]["patch_size"])
    return result


def theirs(reference: dict) -> dict:
    result = {}
    for name, conf in reference["configurations"].items():
        schemes = [("zscore_nonzero" if mask and NNUNET_SCHEMES[s] == "zscore" else NNUNET_SCHEMES[s])
                   for s, mask in zip(conf["normalization_schemes"], conf["use_mask_for_norm"])]
        spacing = conf["spacing"][-2:] if name == "2d" else conf["spacing"]
        result[name] = {"normalization": schemes, "spacing": spacing, "patch_size": conf["patch_size"],
                        "pooling": conf["pool_per_axis"], "stages": conf["n_stages"], "batch_size": conf["batch_size"]}
    return result


def aspect(patch) -> str:
    return ":".join(f"{p / min(patch):.2f}" for p in patch)


def cell(mine, other, text=str) -> str:
    same = mine == other if not isinstance(mine, list) or not isinstance(mine[0], float) else all(
        abs(a - b) <= 1e-3 * max(abs(b), 1) for a, b in zip(mine, other))
    return text(mine) if same else f"**{text(mine)}** (nnU-Net {text(other)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--reference", type=Path, default=Path(__file__).with_name("nnunet_reference.json"))
    args = parser.parse_args()
    reference = json.loads(args.reference.read_text())["datasets"]
    x = lambda values: "x".join(f"{v:g}" for v in values)  # noqa: E731
    rows = ["| dataset | configuration | normalisation | target spacing | pooling per axis | patch (aspect) | "
            "stages | batch |", "|---|---|---|---|---|---|---|---|"]
    for name in sorted(reference):
        cases = nnunet_cases(args.raw / name)
        start = time.perf_counter()
        properties = dataset_properties(cases)
        seconds = time.perf_counter() - start
        print(f"{name}: properties of {len(cases.names)} cases in {seconds:.1f} s "
              f"({len(cases.names) / seconds:.1f} cases/s)")
        mine, other = ours(properties), theirs(reference[name])
        for configuration_name in sorted(other):
            a, b = mine[configuration_name], other[configuration_name]
            rows.append(
                f"| {name} | {configuration_name} | {cell(a['normalization'], b['normalization'], ', '.join)} | "
                f"{cell([round(v, 4) for v in a['spacing']], [round(v, 4) for v in b['spacing']], x)} | "
                f"{cell(a['pooling'], b['pooling'], x)} | "
                f"{cell(a['patch_size'], b['patch_size'], lambda p: f'{x(p)} ({aspect(p)})')} | "
                f"{cell(a['stages'], b['stages'])} | {cell(a['batch_size'], b['batch_size'])} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
