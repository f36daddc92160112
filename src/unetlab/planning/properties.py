"""A dataset's properties, the planner's only input about the data (nnU-Net v2's "fingerprint").

`dataset_properties` reads every training case once, in parallel, and returns a plain dict (logged as
`dataset_properties.json`): per case its shape, spacing and shape after cropping to the non-zero region;
per channel the modality and the intensities of voxels inside labels (mean, median, std, min, max, 0.5 and
99.5 percentiles, pooled over cases from a fixed sample per case, so each case weighs the same, as in
nnU-Net); per class the
share of voxels and the sizes of its connected objects; and the median relative size after cropping.

Not to be confused with `unetlab.data.fingerprint` (a content hash): the properties are cached under
that hash (`cached_properties`), so a dataset is read once however often it is planned.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..data.nnunet_raw import modality

if TYPE_CHECKING:
    from .cases import Cases

SAMPLES_PER_CASE = 10_000  # foreground voxels sampled per case for the intensity statistics (nnU-Net: 1e8 / cases)
PROPERTIES_VERSION = 1  # raise when what the properties hold changes (cached files are then recomputed)

CaseReader = Callable[[], tuple]  # () -> (image (spatial..., C), label (spatial...), spacing)


def case_properties(image: np.ndarray, label: np.ndarray, spacing: Sequence[float], *, seed: int = 0) -> dict:
    """One case's properties: shape, spacing, the shape of its non-zero region, the share of voxels per class,
    its objects' sizes (voxels) per class, and `SAMPLES_PER_CASE` sampled foreground intensities per channel."""
    from scipy import ndimage

    image, label = np.asarray(image), np.asarray(label)
    nonzero = np.any(image != 0, axis=-1)
    cropped = _bounding_shape(nonzero) if nonzero.any() else label.shape
    values, counts = np.unique(label, return_counts=True)
    objects = {}
    for value in values[values > 0]:
        components, count = ndimage.label(label == value)
        objects[int(value)] = np.bincount(components.ravel())[1:].tolist() if count else []
    foreground = image[label > 0]
    rng = np.random.default_rng(seed)
    sample = foreground[rng.integers(0, len(foreground), SAMPLES_PER_CASE)] if len(foreground) else foreground
    return {"shape": list(label.shape), "spacing": [float(v) for v in spacing], "cropped_shape": list(cropped),
            "voxels": {int(v): int(c) for v, c in zip(values, counts)}, "object_sizes": objects,
            "foreground_sample": sample.astype(np.float32)}


def _bounding_shape(mask: np.ndarray) -> tuple[int, ...]:
    """The shape of the smallest box holding every True voxel of `mask`."""
    shape = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        shape.append(int(present[-1] - present[0] + 1))
    return tuple(shape)


def _read_and_describe(reader: CaseReader, seed: int) -> dict:
    image, label, spacing = reader()
    return case_properties(image, label, spacing, seed=seed)


def dataset_properties(cases: "Cases", *, workers: int | None = None) -> dict:
    """The properties of `cases` (module docstring), read by `workers` threads at a time (None: one per CPU; the
    decoding, resampling-free statistics and labelling run in NumPy, SciPy and zlib, which release the GIL)."""
    readers = cases.readers
    with ThreadPoolExecutor(max(1, min(workers or os.cpu_count() or 1, len(readers)))) as pool:
        described = list(pool.map(_read_and_describe, readers, range(len(readers))))
    return summarize(cases.names, described, channel_names=cases.channel_names, labels=cases.labels)


def summarize(names: Sequence[str], cases: Sequence[dict], *, channel_names: Sequence[str],
              labels: dict[str, int]) -> dict:
    """The dataset's properties from its cases' (`case_properties`)."""
    samples = [case.pop("foreground_sample") for case in cases]
    samples = np.concatenate([s for s in samples if len(s)]) if any(len(s) for s in samples) else None
    relative = [np.prod(case["cropped_shape"]) / np.prod(case["shape"]) for case in cases]
    total = sum(sum(case["voxels"].values()) for case in cases)
    classes = {}
    for name, value in labels.items():
        if name == "ignore":
            continue
        sizes = [size for case in cases for size in case["object_sizes"].get(value, [])]
        volume = [size * float(np.prod(case["spacing"])) for case in cases for size in case["object_sizes"].get(value, [])]
        classes[name] = {
            "value": value,
            "share": sum(case["voxels"].get(value, 0) for case in cases) / max(total, 1),
            "cases_with": sum(case["voxels"].get(value, 0) > 0 for case in cases),
            "objects": len(sizes),
            "median_object_voxels": float(np.median(sizes)) if sizes else 0.0,
            "min_object_voxels": int(min(sizes)) if sizes else 0,
            "median_object_volume": float(np.median(volume)) if volume else 0.0,
        }
    for case in cases:
        case.pop("object_sizes")
        case["voxels"] = {str(value): count for value, count in case["voxels"].items()}
    return {
        "version": PROPERTIES_VERSION,
        "num_cases": len(cases),
        "dims": len(cases[0]["shape"]) if cases else 0,
        "channels": [{"name": name, "modality": modality(name), **_intensities(samples, index)}
                     for index, name in enumerate(channel_names)],
        "classes": classes,
        "median_relative_size_after_cropping": float(np.median(relative)) if relative else 1.0,
        "median_shape": [float(v) for v in np.median([case["shape"] for case in cases], axis=0)],
        "median_spacing": [float(v) for v in np.median([case["spacing"] for case in cases], axis=0)],
        "total_voxels": int(total),
        "cases": {name: case for name, case in zip(names, cases)},
    }


def _intensities(samples: np.ndarray | None, channel: int) -> dict:
    """The foreground intensity statistics of one channel ({} where no case has foreground)."""
    if samples is None:
        return {}
    values = samples[:, channel].astype(np.float64)
    return {"mean": float(values.mean()), "median": float(np.median(values)), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max()),
            "p005": float(np.percentile(values, 0.5)), "p995": float(np.percentile(values, 99.5))}


def cached_properties(cache_dir: str | Path | None, fingerprint: str, compute: Callable[[], dict]) -> dict:
    """`compute()`, stored under `cache_dir` by the dataset's content `fingerprint` and read back next time."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"properties-v{PROPERTIES_VERSION}-{fingerprint}.json"
    if path.is_file():
        return json.loads(path.read_text())
    properties = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(properties, indent=1))
    temporary.replace(path)
    return properties
