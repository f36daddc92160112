"""`data=nnunet`: an nnU-Net v2 raw dataset as training and validation data, 2D or 3D.

The dataset is checked (`nnunet_raw.verify_raw_dataset`), its cases are split (seeded, or a fold),
and a plan is made from the training cases' properties, as nnU-Net v2's planner does where no memory
model enters:

- target spacing: the median spacing per axis; where the coarsest axis is more than 3 times the
  finest and holds under a third of the voxels, that axis takes the 10th percentile of its spacings
  instead (`unetlab.planning.planner.target_spacing`);
- normalisation per channel (unless given, as `task=plan` gives it): "ct" (clip to the foreground 0.5/99.5
  percentiles, then the foreground mean/std of the training cases) for channels named CT in dataset.json,
  else a per-image z-score;
- patch size: the median shape at the target spacing rounded to a multiple of what the network divides
  by, each axis at most `max_patch_size`, then shortened along the axis with the largest
  patch-to-median ratio until it holds at most `max_patch_voxels` (`plan_patch_size`).

The plan is remembered beside the cache (`planned`), keyed by the dataset's fingerprint, the training
cases and the planning settings, so a later run reads no case to plan.

The cases are then preprocessed once into the volume cache (`volume_cache.build_cache`, keyed by the
dataset's content fingerprint and the plan), training streams patches from the memory-mapped cases
(a third of each batch on foreground) and validation is the fixed tiling of every validation case.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .fingerprint import combine_digests, file_digest
from .nnunet_raw import RawDataset, modality, read_case, verify_raw_dataset
from ..planning.planner import target_spacing as planned_spacing
from .resample import target_shape
from .volume_cache import build_cache, cache_folder, foreground_statistics, is_complete

@dataclass(frozen=True)
class Plan:
    """What the cases are preprocessed and trained with; logged as the split's description."""

    target_spacing: tuple[float, ...]
    normalization: tuple[str, ...]
    ct_statistics: tuple | None
    patch_size: tuple[int, ...]
    median_shape: tuple[int, ...]  # at the target spacing

    def settings(self) -> dict:
        """The preprocessing settings that key the cache (the patch size does not change the cached cases)."""
        return {"target_spacing": list(self.target_spacing), "normalization": list(self.normalization),
                "ct_statistics": self.ct_statistics}


def dataset_fingerprint(dataset: RawDataset) -> str:
    """16 hex digits of dataset.json and every case's files (names, sizes, bytes): `fingerprint`'s digests."""
    files = [("dataset.json", dataset.root / "dataset.json")]
    for case in dataset.cases:
        files += [("image", path) for path in case.images] + [("label", case.label)]
    return combine_digests([file_digest(role, path) for role, path in files])


def head_classes(dataset: RawDataset) -> int:
    """The model's `num_classes`: 1 (a sigmoid head) for background + one label, else one per label."""
    return 1 if dataset.num_classes == 2 else dataset.num_classes


def channel_normalization(dataset: RawDataset) -> tuple[str, ...]:
    """'ct' for a channel dataset.json names CT, 'zscore' for every other."""
    return tuple("ct" if modality(name) == "ct" else "zscore" for name in dataset.channel_names.values())


def plan_patch_size(median_shape: Sequence[int], multiple: Sequence[int], max_patch_size: int,
                    max_patch_voxels: int) -> tuple[int, ...]:
    """The median shape, each axis at most `max_patch_size` and rounded to a multiple of `multiple` (at
    least one), then, while the patch holds more than `max_patch_voxels`, its axis with the largest
    patch-to-median ratio one multiple shorter (nnU-Net's rule), so the patch keeps the cases' aspect."""
    patch = [max(step, min(round(size / step) * step, max_patch_size // step * step or step))
             for size, step in zip(median_shape, multiple)]
    while math.prod(patch) > max_patch_voxels:
        ratios = [size / max(median, 1) if size > step else 0 for size, median, step in zip(patch, median_shape, multiple)]
        if max(ratios) == 0:
            break  # every axis at one multiple: the smallest patch the network takes
        axis = int(np.argmax(ratios))
        patch[axis] -= multiple[axis]
    return tuple(patch)


def make_plan(dataset: RawDataset, cases: Sequence, *, multiple: Sequence[int], target_spacing=None,
              patch_size=None, normalization=None, max_patch_size: int = 128, max_patch_voxels: int = 64**3) -> Plan:
    """The plan of `cases` (the training cases): one pass reading each (module docstring). CT statistics
    pool foreground voxels sampled from every case, as nnU-Net's fingerprint does."""
    spacings, shapes = [], []
    normalization = tuple(normalization) if normalization else channel_normalization(dataset)
    if len(normalization) != len(dataset.channel_names):
        raise ConfigError(f"data.normalization must name one scheme per channel ({len(dataset.channel_names)}). "
                          f"Received: {list(normalization)}")

    def read_all():  # one case in memory at a time; its spacing and shape noted on the way
        for case in cases:
            image, label, spacing, _ = read_case(case, dataset)
            spacings.append(spacing)
            shapes.append(image.shape[:-1])
            yield image, label

    if "ct" in normalization:
        try:
            statistics = foreground_statistics(read_all())
        except DataError:
            raise DataError(f"data.root={str(dataset.root)!r}: a CT channel is normalised with the foreground's "
                            f"intensities, and no training case has foreground") from None
        ct = tuple(tuple(channel[key] for key in ("mean", "std", "p005", "p995")) for channel in statistics)
    else:
        for _ in read_all():
            pass
        ct = None
    spacings, dims = np.asarray(spacings, np.float64), dataset.dims
    target = tuple(float(v) for v in target_spacing) if target_spacing else planned_spacing(spacings, shapes)[0]
    if len(target) != dims:
        raise ConfigError(f"data.target_spacing must give one spacing per axis ({dims}). Received: {list(target)}")
    resampled = [target_shape(shape, spacing, target) for shape, spacing in zip(shapes, spacings)]
    median_shape = tuple(int(v) for v in np.median(np.asarray(resampled), axis=0))
    if patch_size:
        patch = tuple(int(v) for v in patch_size)
        if len(patch) != dims:
            raise ConfigError(f"data.patch_size must give one size per axis ({dims}). Received: {list(patch)}")
    else:
        patch = plan_patch_size(median_shape, multiple, max_patch_size, max_patch_voxels)
    return Plan(target, normalization, ct, patch, median_shape)


def planned(dataset: RawDataset, cases: Sequence, cache_root: Path, fingerprint: str, **settings) -> Plan:
    """`make_plan(dataset, cases, **settings)`, read from `cache_root` where this dataset, split and settings
    were planned before (a case is then read only to preprocess it, once)."""
    given = settings.get("patch_size")  # a given patch changes nothing else: plans that differ in it share a file
    keyed = {name: value for name, value in settings.items()
             if not given or name not in ("patch_size", "multiple", "max_patch_size", "max_patch_voxels")}
    key = json.dumps([fingerprint, [case.name for case in cases], keyed], sort_keys=True, default=list)
    path = Path(cache_root) / f"plan-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        fields = json.loads(path.read_text())
        plan = Plan(**{name: None if value is None else _tuples(value) for name, value in fields.items()})
        return replace(plan, patch_size=tuple(given)) if given else plan
    plan = make_plan(dataset, cases, **settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(plan_file_text(plan))
    temporary.replace(path)
    return plan


def _tuples(value):
    """JSON lists back to the plan's tuples."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def preprocessed_cases(dataset: RawDataset, cases: Sequence, plan: Plan, cache_root: Path, fingerprint: str) -> Path:
    """The cache folder holding every case of `cases` preprocessed by `plan` (built where missing)."""
    folder = cache_folder(cache_root, fingerprint, plan.settings())

    def loader(case):
        def load():
            image, label, spacing, _ = read_case(case, dataset)
            return image, label, spacing
        return load

    if not is_complete(folder):
        build_cache(folder, [(case.name, loader(case)) for case in cases], settings=plan.settings(),
                    target_spacing=plan.target_spacing, normalization=list(plan.normalization),
                    ct_statistics=plan.ct_statistics, ignore_index=dataset.ignore_label)
    return folder


def describe_plan(plan: Plan) -> str:
    """'spacing 3.00x0.80x0.80, patch 32x96x96 (median shape 40x120x118), normalisation ct'."""
    x = lambda values, fmt="{}": "x".join(fmt.format(v) for v in values)  # noqa: E731
    return (f"spacing {x(plan.target_spacing, '{:.2f}')}, patch {x(plan.patch_size)} (median shape "
            f"{x(plan.median_shape)}), normalisation {', '.join(plan.normalization)}")


def plan_file_text(plan: Plan) -> str:
    """The plan as JSON (what `planned` stores)."""
    return json.dumps(asdict(plan), indent=2)


def check_dataset(dataset: RawDataset, fingerprint: str, cache_root: Path | None) -> None:
    """`verify_raw_dataset`, once per dataset content: a passed check is remembered in `cache_root`."""
    marker = None if cache_root is None else Path(cache_root) / f"checked-{fingerprint}"
    if marker is not None and marker.is_file():
        return
    verify_raw_dataset(dataset)
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def require_cases(cases: Sequence, dataset: RawDataset) -> None:
    if len(cases) < 2:
        raise DataError(f"data.root={str(dataset.root)!r} has {len(cases)} training case(s); training needs "
                        f"at least 2 (one to validate on)")
