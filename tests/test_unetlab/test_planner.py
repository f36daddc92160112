"""The planner's rules, a pure function of properties and device: nnU-Net v2's decisions, each with a reason."""

import math

import numpy as np
import pytest

from unetlab.errors import ConfigError
from unetlab.planning.planner import (Device, batch_size, initial_patch, make_plan, normalization_schemes,
                                      plan_topology, shrink, target_spacing)

CPU = Device("cpu", 16 * 2**30)


def properties(shapes, spacings, *, channels=("CT",), classes=("background", "organ"), relative=1.0, voxels=None):
    """Properties as `unetlab.planning.properties` gives them (the fields the planner reads)."""
    cases = {f"case{i}": {"shape": list(s), "spacing": list(p), "cropped_shape": list(s)}
             for i, (s, p) in enumerate(zip(shapes, spacings))}
    return {"dims": len(shapes[0]), "num_cases": len(cases), "cases": cases,
            "channels": [{"name": name, "modality": name.lower()} for name in channels],
            "classes": {name: {"value": i} for i, name in enumerate(classes)},
            "median_relative_size_after_cropping": relative,
            "total_voxels": voxels or sum(math.prod(s) for s in shapes)}


def test_target_spacing_is_the_median_and_an_anisotropic_axis_takes_its_tenth_percentile():
    isotropic = [[1.0, 1.0, 1.0], [1.2, 1.0, 1.0], [0.8, 1.0, 1.0]]
    assert target_spacing(isotropic, [[100, 100, 100]] * 3)[0] == (1.0, 1.0, 1.0)
    thick = np.array([[5.0, 0.7, 0.7]] * 5 + [[1.0, 0.7, 0.7]] * 2 + [[2.0, 0.7, 0.7]] * 3)
    spacing, reason = target_spacing(thick, [[40, 300, 300]] * 10)  # 5.0 > 3 x 0.7 and 40 x 3 < 300 voxels
    assert spacing[1:] == (0.7, 0.7) and spacing[0] == pytest.approx(np.percentile(thick[:, 0], 10))
    assert "anisotropic" in reason
    # coarse spacing but as many voxels along it (nnU-Net's second condition fails): the median stays
    assert target_spacing(thick, [[300, 300, 300]] * 10)[0][0] == np.median(thick[:, 0])


def test_normalisation_is_ct_for_ct_and_a_zscore_inside_the_non_zero_region_when_cropping_shrinks_the_cases():
    assert normalization_schemes(["ct"], 1.0)[0] == ("ct",)
    assert normalization_schemes(["t1", "t2"], 0.5)[0] == ("zscore_nonzero", "zscore_nonzero")
    assert normalization_schemes(["t1", "ct"], 0.9)[0] == ("zscore", "ct")


def test_the_initial_patch_is_isotropic_in_millimetres_and_clipped_to_the_median_shape():
    patch = initial_patch((3.0, 1.0, 1.0), (200, 400, 400), 96**3)
    assert patch[1] == patch[2] and patch[0] == pytest.approx(patch[1] / 3, abs=1)
    assert math.prod(patch) == pytest.approx(96**3, rel=0.05)
    assert initial_patch((1.0, 1.0), (100.5, 700), 512**2) == (100.5, 512)  # clipped to the median, not grown


@pytest.mark.parametrize("spacing, patch, pooling, kernels0", [
    ((1.0, 1.0), (512, 512), (7, 7), (3, 3)),  # 512 -> 4: seven poolings
    ((1.0, 1.0), (40, 24), (2, 2), (3, 3)),  # 40, 24 -> 10, 6: a single axis pools only from 12 on
    ((3.0, 0.8, 0.8), (12, 48, 48), (1, 3, 3), (1, 3, 3)),  # the thick axis waits until the spacing evens out
    ((1.0, 1.0, 1.0), (64, 64, 64), (4, 4, 4), (3, 3, 3)),
])
def test_pooling_stops_at_a_four_voxel_feature_map_and_skips_coarse_axes(spacing, patch, pooling, kernels0):
    topology = plan_topology(spacing, patch)
    assert topology.pooling == pooling and topology.kernel_sizes[0] == kernels0
    assert len(topology.kernel_sizes) == len(topology.strides) == len(topology.strides) and topology.strides[0] == (1,) * len(spacing)
    assert all(size % step == 0 for size, step in zip(topology.patch_size, topology.multiple))
    assert all(size // step >= 4 for size, step in zip(topology.patch_size, topology.multiple))


def test_the_patch_is_rounded_up_to_what_the_pooling_divides_by():
    topology = plan_topology((1.0, 1.0), (100, 90))
    assert topology.patch_size == tuple(math.ceil(s / m) * m for s, m in zip((100, 90), topology.multiple))


def test_batch_is_at_least_two_and_at_most_five_percent_of_the_dataset():
    assert batch_size((64, 64), dataset_voxels=10**9, wanted=12)[0] == 12
    assert batch_size((64, 64), dataset_voxels=64 * 64 * 100, wanted=12)[0] == 5  # 5% of 100 patches
    assert batch_size((64, 64, 64), dataset_voxels=1000, wanted=2)[0] == 2


def test_a_plan_states_a_reason_for_every_decision():
    plan = make_plan(properties([(40, 300, 300)] * 4, [(5.0, 0.7, 0.7)] * 4), CPU)
    assert plan.dims == 3 and plan.normalization == ("ct",) and plan.loss == "bce_dice"
    assert plan.max_filters == 320 and plan.deep_supervision and plan.schedule == "poly"
    assert {"target_spacing", "normalization", "patch_size", "topology", "batch_size", "loss", "optimizer",
            "plan_2d_beside_3d"} <= set(plan.reasons) and all(plan.reasons.values())
    rgb = make_plan(properties([(300, 400), (200, 380)], [(1.0, 1.0)] * 2, channels=("R", "G", "B"),
                               classes=("background", "a", "b", "c")), CPU)
    assert rgb.loss == "ce_dice" and rgb.normalization == ("zscore",) * 3 and rgb.max_filters == 512
    median = (250, 390)  # the median shape, rounded up to what the pooling divides by
    assert all(m <= size < m + step for size, m, step in zip(rgb.patch_size, median, rgb.topology.multiple))


def test_shrink_halves_the_batch_to_two_then_shortens_the_axis_with_the_largest_patch_to_median_ratio():
    plan = make_plan(properties([(64, 256)] * 4, [(1.0, 1.0)] * 4), CPU)
    plan = plan.__class__(**{**plan.__dict__, "batch_size": 8})
    assert [shrink(plan).batch_size, shrink(shrink(plan)).batch_size] == [4, 2]  # nnU-Net keeps the patch first
    plan = shrink(shrink(plan))
    smaller = shrink(plan)
    assert smaller.batch_size == 2 and smaller.patch_size[0] == plan.patch_size[0]
    assert smaller.patch_size[1] < plan.patch_size[1]  # equal ratios: the last axis, as nnU-Net's argsort
    while smaller is not None:
        plan, smaller = smaller, shrink(smaller)
    assert min(plan.patch_size) >= 8 and plan.batch_size == 2


def test_planning_needs_two_cases():
    with pytest.raises(ConfigError, match="1 case"):
        make_plan(properties([(40, 40)], [(1.0, 1.0)]), CPU)


def test_on_nnunets_8gb_gpu_reference_the_plan_is_nnunets():
    """nnU-Net v2.8.1's own figures (experiments/planning/nnunet_reference.json): its activation estimate of the
    8-stage 512x512 2D network, and its plan of a 2D RGB dataset whose median shape is 279 x 299.5."""
    from unetlab.planning.planner import estimate

    assert estimate(plan_topology((1.0, 1.0), (512, 512)), 2, 512) == 82_624_512
    gpu = Device("gpu", 8 * 2**30)
    rgb = make_plan(properties([(279, 299), (279, 300)], [(1.0, 1.0)] * 2, channels=("R", "G", "B"),
                               classes=("background", "a", "b", "c")), gpu, memory_bytes=8 * 2**30)
    assert rgb.patch_size == (320, 320) and len(rgb.topology.strides) == 7 and rgb.batch_size == 2
    em = make_plan(properties([(512, 512)] * 20, [(1.0, 1.0)] * 20, channels=("EM",)), gpu, memory_bytes=8 * 2**30)
    assert em.patch_size == (512, 512) and em.topology.pooling == (7, 7) and em.batch_size == 2


def test_the_optimizer_is_nnunets_sgd_unless_adam_is_asked_for():
    props = properties([(64, 64)] * 4, [(1.0, 1.0)] * 4)
    assert make_plan(props, CPU).optimizer == {"name": "sgd", "lr": 0.01, "momentum": 0.99, "nesterov": True,
                                                 "weight_decay": 3e-5}
    adam = make_plan(props, CPU, optimizer="adam")
    assert adam.optimizer["name"] == "adam" and "Adam" in adam.reasons["optimizer"]
    with pytest.raises(ConfigError, match="plan.optimizer must be one of sgd, adam"):
        make_plan(props, CPU, optimizer="lion")


def test_auto_takes_adam_for_a_short_training_and_nnunets_sgd_for_a_long_one():
    from unetlab.planning.planner import ADAM_BELOW_STEPS, choose_optimizer

    plan = make_plan(properties([(64, 64)] * 4, [(1.0, 1.0)] * 4), CPU, optimizer="adam")
    short, long = choose_optimizer(plan, 2000), choose_optimizer(plan, 250_000)
    assert short.optimizer["name"] == "adam" and f"under {ADAM_BELOW_STEPS}" in short.reasons["optimizer"]
    assert long.optimizer == {"name": "sgd", "lr": 0.01, "momentum": 0.99, "nesterov": True, "weight_decay": 3e-5}


def test_a_shrunk_plan_states_its_own_topology():
    plan = shrink(make_plan(properties([(512, 512)] * 4, [(1.0, 1.0)] * 4), CPU))
    assert f"{list(plan.topology.pooling)} poolings per axis, {len(plan.topology.strides)} stages" in \
        plan.reasons["topology"] and "shrunk" in plan.reasons["patch_size"]
