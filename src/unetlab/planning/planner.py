"""The planner: a pure function of a dataset's properties, the device and the budgets -> a `Plan`.

It follows nnU-Net v2's published method (Isensee et al. 2021, Nature Methods 18:203, and its default
`ExperimentPlanner`), and states each decision with a one-line reason:

- target spacing: the median spacing per axis; where the coarsest axis is over 3x the others *and* holds
  under a third of their voxels, it takes the 10th percentile of its spacings (at least the other axes'
  largest spacing), so thin-slice cases are not resampled to the thick ones';
- normalisation per channel: "ct" for CT channels (clip to the foreground 0.5/99.5 percentiles, then the
  foreground mean/std); otherwise a per-image z-score, over the non-zero region only ("zscore_nonzero") when
  cropping to it shrinks the median case by at least a quarter;
- patch: aspect from the spacing (isotropic in millimetres), clipped to the median shape. On a GPU it starts
  at nnU-Net's 256^3 (3D) or 2048^2 (2D) voxels and shrinks until nnU-Net's activation `estimate` of a batch of
  two fits its reference, scaled to the memory budget; on a CPU, where time binds first, it starts at
  `CPU_REFERENCE_VOXELS`. The probes then measure (`unetlab.planning.budget`);
- topology: pool an axis while its feature map stays at least `MIN_EDGE` (4) voxels and its spacing is under
  twice the finest pooled one; 3x3(x3) kernels on axes under twice the finest spacing, else 1 (until the
  spacing evens out); the patch rounded up to what the pooling divides by; 32 * 2^i filters per stage, capped
  at 512 (2D) / 320 (3D);
- batch: at least 2, at most 5% of the dataset's voxels per step;
- loss Dice + cross-entropy with deep supervision; SGD (Nesterov, momentum 0.99, lr 0.01) with poly decay.

`shrink` is the step the probes repeat: the batch halves down to 2, then the patch loses one pooling multiple
on its axis with the largest patch-to-median ratio (no axis below `MIN_PATCH_EDGE`), and the topology is
planned again for it.

Axes are in the data's order (z, y, x); nnU-Net moves the coarsest axis first, which for scans is z already.
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
GPU_REFERENCE_VOXELS = {2: 2048**2, 3: 256**3}  # nnU-Net's initial patch sizes
GPU_REFERENCE = {2: (85_000_000, 12), 3: (560_000_000, 2)}  # nnU-Net's estimate that fits 8 GB, with its batch
GPU_REFERENCE_BYTES = 8 * 2**30  # nnU-Net's UNet_reference_val_corresp_GB (plan.memory_budget=8GB is this)
CPU_REFERENCE_VOXELS = {2: 512**2, 3: 96**3}  # a CPU's initial patch: time, not memory, binds it
# A rough training speed, in nnU-Net's activation estimate x batch per second, where a time budget picks the first
# probe: this 2-core CPU trained 2D nnU-Nets at 2-4e7, 3D ones (27-tap kernels) at 1.3e7; a GPU: a hundred times
# that, a guess the probe corrects
WORK_PER_SECOND = {"cpu": {2: 3e7, 3: 1.2e7}, "gpu": {2: 3e9, 3: 1.2e9}}
# The optimizers a plan can name (plan.optimizer), with their settings and reason; poly decay for both.
OPTIMIZERS = {
    "sgd": ({"name": "sgd", "lr": 0.01, "momentum": 0.99, "nesterov": True, "weight_decay": 3e-5},
            "SGD, Nesterov momentum 0.99, lr 0.01, weight decay 3e-5, poly decay (exponent 0.9): nnU-Net's"),
    "adam": ({"name": "adam", "lr": 1e-3},
             "Adam, lr 1e-3, poly decay (exponent 0.9): nnU-Net's nnUNetTrainerAdam, for short budgets"),
}
ADAM_BELOW_STEPS = 25_000  # plan.optimizer=auto: a tenth of nnU-Net's 250,000 steps


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
    median_shape: tuple[float, ...]  # at the target spacing (a median: may end in .5)
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
    num_labels: int = 2  # classes of the labels, background included (nnU-Net's estimate counts its head)

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
        spaced = target[coarse] > ANISOTROPY * max(target[others])
        thin = median_shape[coarse] * ANISOTROPY < min(median_shape[others])
        if spaced and thin:
            value = float(np.percentile(spacings[:, coarse], 10))
            if value < max(target[others]):
                value = max(max(target[others]), value) + 1e-5
            target[coarse] = value
            reason = (f"the median spacing per axis; axis {coarse} is anisotropic (over {ANISOTROPY:g}x the other "
                      f"spacings and under 1/{ANISOTROPY:g} of their voxels): its 10th percentile")
    return tuple(float(v) for v in target), reason


def normalization_schemes(modalities: Sequence[str], median_relative_size: float) -> tuple[tuple[str, ...], str]:
    """One scheme per channel ("ct", "zscore" or "zscore_nonzero"), and why."""
    nonzero = median_relative_size < CROP_SHRINK
    schemes = tuple("ct" if name == "ct" else ("zscore_nonzero" if nonzero else "zscore") for name in modalities)
    crop = (f"cropping to the non-zero region leaves {median_relative_size:.0%} of the median case"
            f"{' (z-score inside it)' if nonzero else ''}")
    return schemes, f"CT channels: foreground percentiles and statistics; others: per-image z-score; {crop}"


def initial_patch(spacing: Sequence[float], median_shape: Sequence[float], reference_voxels: int) -> tuple[float, ...]:
    """`reference_voxels` voxels in the aspect of an isotropic box in millimetres, clipped to the median shape
    (which may be a half voxel: `plan_topology` rounds up)."""
    inverse = 1.0 / np.asarray(spacing, np.float64)
    patch = inverse * (reference_voxels / np.prod(inverse)) ** (1.0 / len(spacing))
    return tuple(float(min(round(p), m)) for p, m in zip(patch, median_shape))


def plan_topology(spacing: Sequence[float], patch_size: Sequence[float]) -> Topology:
    """Strides and kernels for `patch_size` at `spacing` (module docstring), the patch rounded up to a multiple."""
    dims = len(spacing)
    spacing, size = list(map(float, spacing)), list(map(float, patch_size))
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


def estimate(topology: Topology, num_labels: int, max_filters: int) -> int:
    """nnU-Net's memory proxy for a batch of one: the sum of every convolution's output (channels x voxels),
    encoder and decoder (with the transposed convolutions), plus the head; no deep-supervision heads."""
    voxels, stage_voxels = list(topology.patch_size), []
    for stride in topology.strides:
        voxels = [v // s for v, s in zip(voxels, stride)]
        stage_voxels.append(math.prod(voxels))
    filters = [min(BASE_FILTERS * 2**s, max_filters) for s in range(len(stage_voxels))]
    encoder = sum(2 * f * v for f, v in zip(filters, stage_voxels))
    decoder = sum(3 * f * v for f, v in zip(filters[:-1], stage_voxels[:-1]))
    return encoder + decoder + num_labels * stage_voxels[0]


def smaller_topology(topology: Topology, median_shape: Sequence[float], spacing: Sequence[float]) -> Topology | None:
    """One step smaller, as nnU-Net shrinks: the axis with the largest patch-to-median ratio (the last of equals)
    loses the multiple its tentatively shortened patch would need; None when no axis can (`MIN_PATCH_EDGE`)."""
    patch, multiple = list(topology.patch_size), topology.multiple
    ratios = [size / max(m, 1) if size - step >= MIN_PATCH_EDGE else 0.0
              for size, m, step in zip(patch, median_shape, multiple)]
    if max(ratios) == 0:
        return None
    axis = len(ratios) - 1 - int(np.argmax(ratios[::-1]))
    tentative = list(patch)
    tentative[axis] -= multiple[axis]
    patch[axis] -= plan_topology(spacing, tentative).multiple[axis]
    smaller = plan_topology(spacing, patch)
    return smaller if math.prod(smaller.patch_size) < math.prod(topology.patch_size) else None


def shrink(plan: Plan) -> Plan | None:
    """The next smaller plan (module docstring), or None at a batch of 2 of the smallest patch."""
    if plan.batch_size > MIN_BATCH:  # nnU-Net's priority: the patch is kept, the batch fills what is left
        return plan.with_reason("batch_size", f"{plan.reasons.get('batch_size', '')}; halved to fit the budgets",
                                batch_size=max(MIN_BATCH, plan.batch_size // 2))
    smaller = smaller_topology(plan.topology, plan.median_shape, plan.target_spacing)
    if smaller is not None:
        reasons = {**plan.reasons, "topology": topology_reason(smaller),
                   "estimate": estimate_reason(estimate(smaller, plan.num_labels, plan.max_filters))}
        if "shrunk" not in reasons.get("patch_size", ""):
            reasons["patch_size"] = (f"{reasons.get('patch_size', '')}; shrunk (the axis with the largest patch-to-"
                                     f"median ratio first) to fit the budgets")
        return replace(plan, topology=smaller, reasons=reasons)
    return None


def batch_size(patch_size: Sequence[int], dataset_voxels: float, wanted: int) -> tuple[int, str]:
    """`wanted`, at most 5% of the dataset's voxels per batch, at least 2; and why."""
    share = max(1, round(dataset_voxels * MAX_DATASET_SHARE / math.prod(patch_size)))
    size = max(MIN_BATCH, min(wanted, share))
    reason = (f"{wanted} wanted; at most {share} ({MAX_DATASET_SHARE:.0%} of the dataset's voxels per step), "
              f"at least {MIN_BATCH}")
    return size, reason


def fit_estimate(topology: Topology, median_shape, spacing, num_labels: int, max_filters: int,
                 capacity: float) -> tuple[Topology, int]:
    """nnU-Net's GPU rule: shrink while two patches' estimate exceeds `capacity` (its reference x reference batch,
    scaled to the memory budget); the batch that fits the capacity (at least 2)."""
    while 2 * estimate(topology, num_labels, max_filters) > capacity:
        smaller = smaller_topology(topology, median_shape, spacing)
        if smaller is None:
            break
        topology = smaller
    return topology, max(MIN_BATCH, round(capacity / estimate(topology, num_labels, max_filters)))


def configuration(properties: dict, device: Device, *, dims: int | None = None, memory_bytes: int | None = None,
                  reference_voxels: int | None = None) -> dict:
    """The spacing, median shape, topology and batch of one configuration: the dataset's own (`dims` None), or
    the 2D one of a 3D dataset (`dims=2`: its in-plane axes, as nnU-Net plans "2d" beside "3d_fullres")."""
    cases = list(properties["cases"].values())
    spacings = np.array([case["spacing"] for case in cases], np.float64)
    cropped = np.array([case["cropped_shape"] for case in cases], np.float64)
    spacing, spacing_reason = target_spacing(spacings, cropped)
    median_full = np.median(np.round(cropped * spacings / np.asarray(spacing)), axis=0)
    native = properties["dims"]
    dims = dims or native
    spacing, median = tuple(spacing[native - dims:]), tuple(float(v) for v in median_full[native - dims:])
    num_labels = len(properties["classes"])
    max_filters = MAX_FILTERS[dims]
    dataset_voxels = float(np.prod(median_full)) * len(cases)
    if device.kind == "gpu":
        reference, reference_batch = GPU_REFERENCE[dims]
        capacity = reference * reference_batch * (memory_bytes or device.memory_bytes) / GPU_REFERENCE_BYTES
        start = plan_topology(spacing, initial_patch(spacing, median, GPU_REFERENCE_VOXELS[dims]))
        topology, wanted = fit_estimate(start, median, spacing, num_labels, max_filters, capacity)
        sized = (f"{GPU_REFERENCE_VOXELS[dims]} voxels shaped by the spacing, clipped to the median shape, shrunk "
                 f"(largest patch-to-median axis first) until nnU-Net's estimate of two fits the memory budget")
    else:
        reference = reference_voxels or CPU_REFERENCE_VOXELS[dims]
        topology, wanted = plan_topology(spacing, initial_patch(spacing, median, reference)), MIN_BATCH
        sized = f"{reference} voxels (a CPU's share) shaped by the spacing, clipped to the median shape"
    batch, batch_reason = batch_size(topology.patch_size, dataset_voxels, wanted)
    return {"dims": dims, "spacing": spacing, "spacing_reason": spacing_reason, "median_shape": median,
            "topology": topology, "batch_size": batch, "batch_reason": batch_reason, "max_filters": max_filters,
            "patch_reason": (f"{sized}, rounded up to a multiple of {list(topology.multiple)} (median shape "
                             f"{'x'.join(f'{v:g}' for v in median)})"),
            "estimate": estimate(topology, num_labels, max_filters)}


def topology_reason(topology: Topology) -> str:
    return (f"pool an axis while its feature map keeps >= {MIN_EDGE} voxels and its spacing is under 2x the finest: "
            f"{list(topology.pooling)} poolings per axis, {len(topology.strides)} stages")


def estimate_reason(value: int) -> str:
    return f"nnU-Net's activation estimate {value:,} (a batch of one)"


def with_optimizer(plan: Plan, name: str, reason: str | None = None) -> Plan:
    """`plan` training with the optimizer `name` (a key of `OPTIMIZERS`)."""
    settings, default_reason = OPTIMIZERS[name]
    return plan.with_reason("optimizer", reason or default_reason, optimizer=dict(settings))


def choose_optimizer(plan: Plan, total_steps: int) -> Plan:
    """plan.optimizer=auto: nnU-Net's SGD for a long training, Adam below `ADAM_BELOW_STEPS` steps, where it
    trained better (experiments/README.md, "Self-configuration")."""
    if total_steps < ADAM_BELOW_STEPS:
        return with_optimizer(plan, "adam", f"{OPTIMIZERS['adam'][1]}: {total_steps} steps are under "
                                            f"{ADAM_BELOW_STEPS}, where Adam trained better than nnU-Net's SGD")
    return with_optimizer(plan, "sgd", f"{OPTIMIZERS['sgd'][1]}: {total_steps} steps (>= {ADAM_BELOW_STEPS})")


def make_plan(properties: dict, device: Device, *, memory_bytes: int | None = None,
              reference_voxels: int | None = None, optimizer: str = "sgd", head_classes: int | None = None) -> Plan:
    """The plan for a dataset with `properties` (`unetlab.planning.properties`) on `device`: the decisions of
    the module docstring, each with its reason, before the probes measure memory and time. `optimizer`: a key
    of `OPTIMIZERS`; `head_classes`: the model's output classes (1: a sigmoid head, and a binary loss), else
    the dataset's classes decide.""" 
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"plan.optimizer must be one of {', '.join(OPTIMIZERS)}. Received: optimizer={optimizer!r}")
    if properties["num_cases"] < 2:
        raise ConfigError(f"the dataset has {properties['num_cases']} case(s); planning needs at least 2 (one to "
                          f"validate on)")
    dims = properties["dims"]
    config = configuration(properties, device, memory_bytes=memory_bytes, reference_voxels=reference_voxels)
    modalities = [channel["modality"] for channel in properties["channels"]]
    schemes, norm_reason = normalization_schemes(modalities, properties["median_relative_size_after_cropping"])
    topology = config["topology"]
    binary = (head_classes == 1) if head_classes else sum(name != "background" for name in properties["classes"]) == 1
    beside = "2D data: the 2D configuration only"
    if dims == 3:
        flat = configuration(properties, device, dims=2, memory_bytes=memory_bytes)
        beside = (f"nnU-Net also plans a 2D configuration (patch {'x'.join(map(str, flat['topology'].patch_size))}, "
                  f"{len(flat['topology'].strides)} stages, batch {flat['batch_size']}); unetlab trains the 3D one")
    reasons = {
        "target_spacing": config["spacing_reason"],
        "normalization": norm_reason,
        "patch_size": config["patch_reason"],
        "topology": topology_reason(topology),
        "filters": f"{BASE_FILTERS} * 2^stage, capped at {config['max_filters']} ({dims}D, as nnU-Net)",
        "batch_size": config["batch_reason"],
        "estimate": estimate_reason(config["estimate"]),
        "loss": "Dice + cross-entropy on every deep-supervision output (nnU-Net's DC_and_CE)",
        "optimizer": OPTIMIZERS[optimizer][1],
        "plan_2d_beside_3d": beside,
    }
    return Plan(dims=dims, target_spacing=config["spacing"], median_shape=config["median_shape"],
                normalization=schemes, topology=topology, filters=BASE_FILTERS, max_filters=config["max_filters"],
                batch_size=config["batch_size"], loss="bce_dice" if binary else "ce_dice", deep_supervision=True,
                optimizer=dict(OPTIMIZERS[optimizer][0]),
                schedule="poly", plan_2d_beside_3d=dims == 3, reasons=reasons, num_labels=len(properties["classes"]))
