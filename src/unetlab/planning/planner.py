"""The planner: a pure function of a dataset's properties, the device and the budgets -> a `Plan`.

It follows nnU-Net v2's published method (Isensee et al. 2021, Nature Methods 18:203, and its
`ExperimentPlanner`) where no memory model enters, and states each decision with a one-line reason:

- target spacing: the median spacing per axis; where the coarsest axis is over 3x the finest *and* holds
  under a third of the voxels of the others, it takes the 10th percentile of its spacings (at least the other
  axes' largest spacing), so thin-slice cases are not resampled to the thick ones';
- normalisation per channel: "ct" for CT channels (clip to the foreground 0.5/99.5 percentiles, then the
  foreground mean/std); otherwise a per-image z-score, over the non-zero region only ("zscore_nonzero") when
  cropping to it shrinks the median case by at least a quarter;
- patch: aspect from the spacing (isotropic in millimetres), `reference_voxels` of them (nnU-Net: 256^3 in
  3D, 2048^2 in 2D; less on a CPU), clipped to the median shape;
- topology: pool an axis while its feature map stays at least `MIN_EDGE` (4) voxels and its spacing is under
  twice the finest pooled one; 3x3(x3) kernels on axes under twice the finest spacing, else 1 (until the
  spacing evens out); the patch rounded up to what the pooling divides by; 32 * 2^i filters per stage, capped
  at 512 (2D) / 320 (3D);
- batch: at least 2, at most 5% of the dataset's voxels per step;
- loss Dice + cross-entropy with deep supervision; SGD (Nesterov, momentum 0.99, lr 0.01) with poly decay.

`shrink` is the step the memory and time probes repeat: the patch loses one pooling multiple on its axis
with the largest patch-to-median ratio (no axis below `MIN_PATCH_EDGE`), and the topology is planned again
for it; at the smallest patch, the batch halves down to 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..errors import ConfigError

ANISOTROPY = 3.0  # a coarse axis over 3x the finest spacing (and under 1/3 of the voxels) is anisotropic
MIN_EDGE = 4  # nnU-Net's UNet_featuremap_min_edge_length
MIN_PATCH_EDGE = 2 * MIN_EDGE  # shrinking stops there: an axis shorter than this cannot pool once
MAX_FILTERS = {2: 512, 3: 320}
BASE_FILTERS = 32
MIN_BATCH = 2
MAX_DATASET_SHARE = 0.05  # a batch holds at most 5% of the dataset's voxels
CROP_SHRINK = 0.75  # cropping to the non-zero region below this median relative size: normalise inside it only
REFERENCE_VOXELS = {"gpu": {2: 2048**2, 3: 256**3}, "cpu": {2: 512**2, 3: 96**3}}


@dataclass(frozen=True)
class Device:
    """Where the plan trains: "cpu" or "gpu", its memory in bytes, a name for the plan's comments."""

    kind: str
    memory_bytes: int
    name: str = ""


@dataclass(frozen=True)
class Topology:
    """The network for one patch: per-stage strides and kernel sizes (the first stage's strides are 1)."""

    patch_size: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]

    @property
    def multiple(self) -> tuple[int, ...]:
        """What each patch axis must be a multiple of: the product of its strides."""
        return tuple(math.prod(stage[axis] for stage in self.strides) for axis in range(len(self.patch_size)))

    @property
    def pooling(self) -> tuple[int, ...]:
        """Downsamplings per axis."""
        return tuple(sum(stage[axis] > 1 for stage in self.strides) for axis in range(len(self.patch_size)))


@dataclass(frozen=True)
class Plan:
    """Everything the planner decides; `reasons[key]` says why, one line each."""

    dims: int
    target_spacing: tuple[float, ...]
    median_shape: tuple[int, ...]  # at the target spacing
    normalization: tuple[str, ...]
    topology: Topology
    filters: int
    max_filters: int
    batch_size: int
    loss: str
    deep_supervision: bool
    optimizer: dict
    schedule: str
    plan_2d_beside_3d: bool
    reasons: dict = field(default_factory=dict)

    @property
    def patch_size(self) -> tuple[int, ...]:
        return self.topology.patch_size

    def with_reason(self, key: str, reason: str, **changes) -> "Plan":
        return replace(self, reasons={**self.reasons, key: reason}, **changes)


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[tuple[float, ...], str]:
    """The target spacing of cases with `spacings` and (cropped) `shapes` (one row per case), and why."""
    spacings, shapes = np.asarray(spacings, np.float64), np.asarray(shapes, np.float64)
    target = np.median(spacings, axis=0)
    reason = "the median spacing per axis"
    if len(target) > 1:
        coarse = int(np.argmax(target))
        others = [axis for axis in range(len(target)) if axis != coarse]
        median_shape = np.median(shapes, axis=0)
        spaced = target[coarse] > ANISOTROPY * min(target[others])
        thin = median_shape[coarse] * ANISOTROPY < min(median_shape[others])
        if spaced and thin:
            value = float(np.percentile(spacings[:, coarse], 10))
            if value < max(target[others]):
                value = max(max(target[others]), value) + 1e-5
            target[coarse] = value
            reason = (f"the median spacing per axis; axis {coarse} is anisotropic (over {ANISOTROPY:g}x the finest "
                      f"spacing and under 1/{ANISOTROPY:g} of the voxels): its 10th percentile")
    return tuple(float(v) for v in target), reason


def normalization_schemes(modalities: Sequence[str], median_relative_size: float) -> tuple[tuple[str, ...], str]:
    """One scheme per channel ("ct", "zscore" or "zscore_nonzero"), and why."""
    nonzero = median_relative_size < CROP_SHRINK
    schemes = tuple("ct" if name == "ct" else ("zscore_nonzero" if nonzero else "zscore") for name in modalities)
    crop = (f"cropping to the non-zero region leaves {median_relative_size:.0%} of the median case"
            f"{' (z-score inside it)' if nonzero else ''}")
    return schemes, f"CT channels: foreground percentiles and statistics; others: per-image z-score; {crop}"


def initial_patch(spacing: Sequence[float], median_shape: Sequence[int], reference_voxels: int) -> tuple[int, ...]:
    """`reference_voxels` voxels in the aspect of an isotropic box in millimetres, clipped to the median shape."""
    inverse = 1.0 / np.asarray(spacing, np.float64)
    patch = inverse * (reference_voxels / np.prod(inverse)) ** (1.0 / len(spacing))
    return tuple(int(min(round(p), m)) for p, m in zip(patch, median_shape))


def plan_topology(spacing: Sequence[float], patch_size: Sequence[int]) -> Topology:
    """Strides and kernels for `patch_size` at `spacing` (module docstring), the patch rounded up to a multiple."""
    dims = len(spacing)
    spacing, size = list(map(float, spacing)), list(map(int, patch_size))
    strides, kernels, kernel = [(1,) * dims], [], [1] * dims
    while True:
        axes = [axis for axis in range(dims) if size[axis] >= 2 * MIN_EDGE]
        if not axes:
            break
        finest = min(spacing[axis] for axis in axes)
        axes = [axis for axis in axes if spacing[axis] / finest < 2]
        if not axes or (len(axes) == 1 and size[axes[0]] < 3 * MIN_EDGE):
            break
        kernel = [3 if kernel[axis] == 3 or spacing[axis] / min(spacing) < 2 else 1 for axis in range(dims)]
        kernels.append(tuple(kernel))
        strides.append(tuple(2 if axis in axes else 1 for axis in range(dims)))
        for axis in axes:
            spacing[axis] *= 2
            size[axis] = math.ceil(size[axis] / 2)
    kernels.append((3,) * dims)
    multiple = [math.prod(stage[axis] for stage in strides) for axis in range(dims)]
    patch = tuple(int(math.ceil(p / m) * m) for p, m in zip(patch_size, multiple))
    return Topology(patch, tuple(strides), tuple(kernels))


def shrink(plan: Plan, spacing: Sequence[float] | None = None) -> Plan | None:
    """The next smaller plan (module docstring), or None at a 2-patch batch of the smallest patch."""
    topology, median = plan.topology, plan.median_shape
    ratios = [size / max(m, 1) if size - step >= MIN_PATCH_EDGE else 0.0
              for size, m, step in zip(topology.patch_size, median, topology.multiple)]
    if max(ratios) > 0:
        axis = len(ratios) - 1 - int(np.argmax(ratios[::-1]))  # the last of equal ratios, as nnU-Net's argsort
        patch = list(topology.patch_size)
        patch[axis] -= topology.multiple[axis]
        smaller = plan_topology(spacing or plan.target_spacing, patch)
        if math.prod(smaller.patch_size) < math.prod(topology.patch_size):
            return replace(plan, topology=smaller)
    if plan.batch_size > MIN_BATCH:
        return replace(plan, batch_size=max(MIN_BATCH, plan.batch_size // 2))
    return None


def batch_size(patch_size: Sequence[int], total_voxels: float, wanted: int) -> tuple[int, str]:
    """`wanted`, at most 5% of the dataset's voxels per batch, at least 2; and why."""
    share = max(1, round(total_voxels * MAX_DATASET_SHARE / math.prod(patch_size)))
    size = max(MIN_BATCH, min(wanted, share))
    reason = (f"{wanted} wanted; at most {share} ({MAX_DATASET_SHARE:.0%} of the dataset's voxels per step), "
              f"at least {MIN_BATCH}")
    return size, reason


def make_plan(properties: dict, device: Device, *, reference_voxels: int | None = None, wanted_batch: int = 2) -> Plan:
    """The plan for a dataset with `properties` (`unetlab.planning.properties`) on `device`: the decisions of
    the module docstring, each with its reason, before the probes measure memory and time."""
    cases = list(properties["cases"].values())
    if len(cases) < 2:
        raise ConfigError(f"the dataset has {len(cases)} case(s); planning needs at least 2 (one to validate on)")
    dims = properties["dims"]
    spacings = np.array([case["spacing"] for case in cases])
    cropped = np.array([case["cropped_shape"] for case in cases])
    spacing, spacing_reason = target_spacing(spacings, cropped)
    resampled = cropped * spacings / np.asarray(spacing)
    median_shape = tuple(int(round(v)) for v in np.median(resampled, axis=0))
    modalities = [channel["modality"] for channel in properties["channels"]]
    schemes, norm_reason = normalization_schemes(modalities, properties["median_relative_size_after_cropping"])
    reference = reference_voxels or REFERENCE_VOXELS[device.kind][dims]
    topology = plan_topology(spacing, initial_patch(spacing, median_shape, reference))
    batch, batch_reason = batch_size(topology.patch_size, properties["total_voxels"], wanted_batch)
    binary = sum(name != "background" for name in properties["classes"]) == 1
    anisotropic = dims == 3 and max(spacing) > ANISOTROPY * min(spacing)
    reasons = {
        "target_spacing": spacing_reason,
        "normalization": norm_reason,
        "patch_size": (f"{reference} voxels ({device.kind} reference) shaped by the spacing, clipped to the "
                       f"median shape {list(median_shape)}, rounded up to a multiple of {list(topology.multiple)}"),
        "topology": (f"pool an axis while its feature map keeps >= {MIN_EDGE} voxels and its spacing is under 2x "
                     f"the finest: {list(topology.pooling)} poolings per axis, {len(topology.strides)} stages"),
        "filters": f"{BASE_FILTERS} * 2^stage, capped at {MAX_FILTERS[dims]} ({dims}D, as nnU-Net)",
        "batch_size": batch_reason,
        "loss": "Dice + cross-entropy on every deep-supervision output (nnU-Net's DC_and_CE)",
        "optimizer": "SGD, Nesterov momentum 0.99, lr 0.01, weight decay 3e-5, poly decay (exponent 0.9): nnU-Net's",
        "plan_2d_beside_3d": ("3D data: nnU-Net also plans a 2D configuration; unetlab trains the 3D one "
                              + ("(anisotropic spacing: the 2D one is the one to try first)" if anisotropic else "")
                              if dims == 3 else "2D data: the 2D configuration only"),
    }
    return Plan(dims=dims, target_spacing=spacing, median_shape=median_shape, normalization=schemes,
                topology=topology, filters=BASE_FILTERS, max_filters=MAX_FILTERS[dims], batch_size=batch,
                loss="bce_dice" if binary else "ce_dice", deep_supervision=True,
                optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.99, "nesterov": True, "weight_decay": 3e-5},
                schedule="poly", plan_2d_beside_3d=dims == 3, reasons=reasons)
