"""Fitting a plan to the memory and time budgets from measurements, and the budgets' notation."""

import math
from dataclasses import replace

import pytest

from test_planner import CPU, properties
from unetlab.errors import ConfigError
from unetlab.planning.budget import HEADROOM, fit_to_budgets, parse_duration, parse_size, schedule
from unetlab.planning.planner import make_plan, shrink
from unetlab.planning.probe import OUT_OF_MEMORY, Measurement

MB = 2**20


def voxel_cost(plan):
    """A measurement that grows with the batch's voxels (1 KB each on 200 MB), as real steps do."""
    voxels = math.prod(plan.patch_size) * plan.batch_size
    return Measurement(peak_bytes=200 * MB + voxels * 1024, seconds_per_step=voxels * 1e-6, seconds_per_inference=0.1,
                       baseline_bytes=200 * MB)


def test_a_plan_over_the_memory_budget_shrinks_to_the_largest_its_probe_predicts_to_fit_checked():
    plan = make_plan(properties([(256, 256)] * 20, [(1.0, 1.0)] * 20), CPU)
    budget = 300 * MB
    fitted = fit_to_budgets(plan, voxel_cost, memory_bytes=budget)
    first, second = fitted.trials  # the plan, then the largest it predicts to fit, measured before it is taken
    assert first.patch_size == plan.patch_size and second.patch_size == fitted.plan.patch_size
    assert not fitted.predicted and fitted.measurement.peak_bytes <= HEADROOM * budget
    larger = plan
    while shrink(larger).patch_size != fitted.plan.patch_size:
        larger = shrink(larger)
    assert voxel_cost(larger).peak_bytes > HEADROOM * budget  # the largest that fits
    roomy = fit_to_budgets(plan, voxel_cost, memory_bytes=8 * 2**30)
    assert roomy.plan.patch_size == plan.patch_size and len(roomy.trials) == 1 and not roomy.predicted


def test_a_probe_out_of_memory_predicts_nothing_the_search_halves_the_rest():
    plan = make_plan(properties([(512, 512)] * 20, [(1.0, 1.0)] * 20), CPU)
    limit = 500 * MB  # the system kills a probe past this

    def killed(candidate):
        m = voxel_cost(candidate)
        return OUT_OF_MEMORY if m.peak_bytes > limit else m

    fitted = fit_to_budgets(plan, killed, memory_bytes=2 * 2**30)
    assert fitted.trials[0].measurement.out_of_memory and not fitted.measurement.out_of_memory
    assert voxel_cost(fitted.plan).peak_bytes <= limit and len(fitted.trials) <= 8


def test_a_time_budget_shrinks_the_patch_until_min_steps_fit_measuring_a_larger_choice_first():
    plan = make_plan(properties([(512, 512)] * 20, [(1.0, 1.0)] * 20), CPU)
    fitted = fit_to_budgets(plan, voxel_cost, memory_bytes=8 * 2**30, time_seconds=60, min_steps=250)
    first, *others = fitted.trials  # a quarter of the work first: then the larger ones it predicts to fit
    assert math.prod(first.patch_size) == pytest.approx(math.prod(plan.patch_size) / 4, rel=0.3) and others
    assert not fitted.predicted and fitted.plan.patch_size == others[-1].patch_size
    assert 60 / voxel_cost(fitted.plan).seconds_per_step >= 250 > 60 / voxel_cost(plan).seconds_per_step


def test_a_memory_budget_below_the_smallest_network_names_both_figures():
    """Measured: the smallest network's probe peaks over the budget (its runtime alone fits)."""
    plan = make_plan(properties([(64, 64)] * 4, [(1.0, 1.0)] * 4), CPU)
    lean_runtime = lambda candidate: replace(voxel_cost(candidate), baseline_bytes=50 * MB)  # noqa: E731
    with pytest.raises(ConfigError, match=r"^plan.memory_budget=100MB is below what the smallest network needs: "
                                          r"\d+MB \(a 8x8 patch, batch 2"):
        fit_to_budgets(plan, lean_runtime, memory_bytes=100 * MB)


def test_a_budget_below_the_runtime_alone_is_refused_after_the_first_probe():
    """A probe's memory before its first step, less its weights, is what every network needs: over the budget,
    no smaller network is probed (each probe is a process and real steps)."""
    plan = make_plan(properties([(64, 64)] * 4, [(1.0, 1.0)] * 4), CPU)
    probed = []
    with pytest.raises(ConfigError, match=r"^plan.memory_budget=100MB is below what the smallest network needs: over "
                                          r"235MB \(a 8x8 patch, batch 2: the runtime and the data alone take 200MB"):
        fit_to_budgets(plan, lambda candidate: probed.append(candidate) or voxel_cost(candidate), memory_bytes=100 * MB)
    assert len(probed) == 1


def test_epochs_and_steps_fill_the_time_budget_and_nnunets_schedule_is_priced():
    m = Measurement(peak_bytes=0, seconds_per_step=0.5, seconds_per_inference=0.2, seconds_first_step=10.0,
                    seconds_per_save=1.0)
    s = schedule(m, time_seconds=600, spent_seconds=60, validation_batches=50, end_seconds=20)
    fit = 600 - 60 - 20
    assert s.time_limit_minutes == pytest.approx(fit / 60)
    assert 10 + s.epochs * s.epoch_seconds <= fit < 10 + (s.epochs + 1) * s.epoch_seconds
    assert 50 * 0.2 <= 0.1 * s.epoch_seconds + 1e-9 or s.steps_per_epoch == 250  # validation at most a tenth
    assert s.nnunet_default_hours == pytest.approx(1000 * (250 * 0.5 + 10 + 1) / 3600)


def test_a_time_budget_too_short_for_one_epoch_says_how_long_one_takes():
    m = Measurement(peak_bytes=0, seconds_per_step=2.0, seconds_per_inference=1.0, seconds_first_step=20.0)
    with pytest.raises(ConfigError, match=r"^plan.time_budget=30s is too short for one epoch: one takes \d+ s here \(20 steps of 2.00 s after 20 s "):
        schedule(m, time_seconds=30, spent_seconds=10, validation_batches=10)


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("90s", 90), ("1.5h", 5400), (10, 600), ("2min", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, size", [("4GB", 4 * 2**30), ("512MB", 512 * MB), ("1.5GiB", int(1.5 * 2**30))])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_bad_budgets_name_their_key():
    with pytest.raises(ConfigError, match=r"^plan.time_budget must be a duration such as 15m.*Received: time_budget='soon'"):
        parse_duration("soon")
    with pytest.raises(ConfigError, match=r"^plan.memory_budget must be a size such as 4GB.*Received: memory_budget='-1GB'"):
        parse_size("-1GB")
    with pytest.raises(ConfigError, match="a size such as 4GB"):
        parse_size(8)  # 8 bytes or 8 GB? a unit is required


def test_without_time_to_measure_a_larger_plan_it_is_taken_on_prediction_only_with_memory_to_spare():
    import time

    def slow(plan):
        time.sleep(0.2)  # a probe costs more than PROBE_SHARE of a 1 s budget
        return voxel_cost(plan)

    plan = make_plan(properties([(512, 512)] * 20, [(1.0, 1.0)] * 20), CPU)
    roomy = fit_to_budgets(plan, slow, memory_bytes=64 * 2**30, time_seconds=1.0, min_steps=0)
    assert len(roomy.trials) == 1 and roomy.predicted and roomy.plan.patch_size == plan.patch_size
    tight = fit_to_budgets(plan, slow, memory_bytes=900 * MB, time_seconds=1.0, min_steps=0)
    assert len(tight.trials) == 1 and voxel_cost(plan).peak_bytes < HEADROOM * 900 * MB  # the largest would fit ...
    assert tight.measurement.peak_bytes <= 0.5 * 900 * MB and tight.plan.patch_size != plan.patch_size  # ... unmeasured: no


def test_where_whole_validation_passes_leave_too_few_epochs_each_validates_on_a_fixed_subset():
    m = Measurement(peak_bytes=0, seconds_per_step=1.0, seconds_per_inference=0.3, seconds_first_step=10.0)
    s = schedule(m, time_seconds=300, spent_seconds=60, validation_batches=160)  # a whole pass: 48 s
    assert s.validation_steps is not None and s.validation_steps < 160 and s.epochs >= 5
    assert "on %d of its 160 batches" % s.validation_steps in s.reason
    light = schedule(m, time_seconds=3000, spent_seconds=60, validation_batches=10)
    assert light.validation_steps is None


def test_a_rough_device_speed_picks_the_first_probe_of_a_time_budget():
    plan = make_plan(properties([(512, 512)] * 20, [(1.0, 1.0)] * 20), CPU)
    fitted = fit_to_budgets(plan, voxel_cost, memory_bytes=8 * 2**30, time_seconds=60, min_steps=250,
                            work_per_second=1e7)
    first = fitted.trials[0]
    assert math.prod(first.patch_size) < math.prod(plan.patch_size) / 4  # 2.4 s a step: far below a quarter
    assert 60 / voxel_cost(fitted.plan).seconds_per_step >= 250
