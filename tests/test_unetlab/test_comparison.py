"""Paired comparison of two runs: bootstrap interval, Wilcoxon p-value, wins in the metric's direction."""

import numpy as np
import pytest
from PIL import Image
from scipy.stats import wilcoxon

from unetlab.comparison import (LOWER_IS_BETTER, PairedComparison, format_table, higher_is_better,
                                paired_comparison, paired_plot)
from unetlab.errors import ConfigError, DataError

RESAMPLES = 2000


def runs(values_a, values_b):
    """Case name -> value dicts of two runs on cases case00, case01, ..."""
    names = [f"case{i:02d}" for i in range(len(values_a))]
    return dict(zip(names, map(float, values_a))), dict(zip(names, map(float, values_b)))


def shifted_runs(shift=0.05, n=30, seed=3):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.6, 0.9, n)
    return runs(a, a + shift + rng.normal(0.0, 0.005, n))


def test_identical_runs_differ_by_nothing():
    a, _ = shifted_runs()
    result = paired_comparison(a, dict(a), "dice", resamples=RESAMPLES)
    assert result.mean_difference == 0.0
    assert result.ci_low <= 0.0 <= result.ci_high
    assert result.p_value == 1.0
    assert (result.better, result.worse, result.ties) == (0, 0, 30)


def test_a_consistent_gain_gives_an_interval_around_it_that_excludes_0():
    result = paired_comparison(*shifted_runs(0.05), "dice", resamples=RESAMPLES)
    assert 0.0 < result.ci_low < 0.05 < result.ci_high < 0.06
    assert result.mean_difference == pytest.approx(0.05, abs=0.003)
    assert result.p_value < 0.05
    assert (result.better, result.worse, result.ties) == (30, 0, 0)


def test_two_draws_from_the_same_distribution_give_an_interval_containing_0():
    rng = np.random.default_rng(7)
    result = paired_comparison(*runs(rng.uniform(0.6, 0.9, 40), rng.uniform(0.6, 0.9, 40)), "dice",
                               resamples=RESAMPLES)
    assert result.ci_low < 0.0 < result.ci_high
    assert result.p_value > 0.05


def test_smaller_values_win_for_a_lower_is_better_metric():
    a, b = shifted_runs(-0.05)  # B's values are smaller
    vi = paired_comparison(a, b, "vi", resamples=RESAMPLES)
    assert not vi.higher_is_better
    assert (vi.better, vi.worse) == (30, 0)
    assert vi.mean_difference < 0.0  # differences stay B - A whatever the direction
    dice = paired_comparison(a, b, "dice", resamples=RESAMPLES)
    assert (dice.better, dice.worse) == (0, 30)


def test_direction_of_each_metric():
    assert not any(higher_is_better(name) for name in LOWER_IS_BETTER)
    assert not any(higher_is_better(name) for name in ("hd95", "hd95_1", "hd95_2", "mean_hd95"))
    assert all(higher_is_better(name) for name in ("dice", "iou", "precision", "recall", "v_rand", "v_info",
                                                   "surface_dice_1", "dice_1", "pixel_accuracy"))


def test_interval_matches_a_loop_over_resamples_with_the_same_seed():
    a, b = runs([0.50, 0.62, 0.71, 0.55, 0.80, 0.66, 0.59], [0.52, 0.60, 0.75, 0.61, 0.79, 0.70, 0.66])
    result = paired_comparison(a, b, "dice", resamples=500, confidence=0.9, seed=11)
    differences = np.array([b[case] - a[case] for case in sorted(a)])
    rng, n = np.random.default_rng(11), len(differences)
    means = []
    for _ in range(500):
        sample = [differences[rng.integers(0, n)] for _ in range(n)]
        means.append(sum(sample) / n)
    means.sort()
    expected = np.percentile(means, [5.0, 95.0])
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(expected), rel=1e-12, abs=1e-15)


def test_interval_is_the_same_when_the_indices_are_drawn_in_chunks(monkeypatch):
    import unetlab.comparison as comparison

    a, b = shifted_runs()
    whole = paired_comparison(a, b, "dice", resamples=1000, seed=5)
    monkeypatch.setattr(comparison, "_CHUNK_ELEMENTS", 30 * 7)  # 7 resamples a chunk, the last one shorter
    chunked = paired_comparison(a, b, "dice", resamples=1000, seed=5)
    assert (chunked.ci_low, chunked.ci_high) == pytest.approx((whole.ci_low, whole.ci_high), rel=1e-12)


def test_same_seed_same_result_other_seed_other_interval():
    a, b = shifted_runs()
    first, second = (paired_comparison(a, b, "dice", resamples=1000, seed=4) for _ in range(2))
    other = paired_comparison(a, b, "dice", resamples=1000, seed=5)
    assert (first.ci_low, first.ci_high, first.p_value) == (second.ci_low, second.ci_high, second.p_value)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_p_value_is_scipy_wilcoxon_of_b_minus_a():
    rng = np.random.default_rng(2)
    a, b = runs(rng.uniform(0.5, 0.9, 12), rng.uniform(0.55, 0.95, 12))
    result = paired_comparison(a, b, "iou", resamples=RESAMPLES)
    differences = np.array([b[case] - a[case] for case in sorted(a)])
    assert result.p_value == pytest.approx(wilcoxon(differences, alternative="two-sided").pvalue)


def test_cases_are_sorted_and_rows_and_summary_follow_them():
    a, b = {"z": 0.5, "m": 0.7, "a": 0.9}, {"m": 0.6, "a": 0.9, "z": 0.8}
    result = paired_comparison(a, b, "dice", resamples=RESAMPLES)
    assert result.cases == ("a", "m", "z")
    assert [row["case"] for row in result.rows()] == ["a", "m", "z"]
    assert result.rows()[2] == {"case": "z", "a": 0.5, "b": 0.8, "difference": pytest.approx(0.3)}
    summary = result.summary()
    assert set(summary) == {"mean_a", "mean_b", "mean_difference", "ci_low", "ci_high", "p_value", "better",
                            "worse", "ties", "num_cases"}
    assert all(isinstance(value, float) for value in summary.values())
    assert (summary["better"], summary["worse"], summary["ties"], summary["num_cases"]) == (1, 1, 1, 3)
    assert summary["mean_b"] == pytest.approx(np.mean([0.6, 0.9, 0.8]))


def test_different_cases_are_rejected_with_counts_and_examples():
    a = {f"a{i}": 0.5 for i in range(5)} | {"shared": 0.5}
    b = {"b1": 0.5, "shared": 0.5}
    with pytest.raises(DataError, match="same cases") as raised:
        paired_comparison(a, b, "dice")
    message = str(raised.value)
    assert "5 case(s) (a0, a1, a2, ...) only in A" in message
    assert "1 case(s) (b1) only in B" in message
    assert "\n" not in message


def test_fewer_than_two_cases_are_rejected():
    with pytest.raises(DataError, match="at least 2 common cases; the runs have 1"):
        paired_comparison({"x": 0.5}, {"x": 0.6}, "dice")


@pytest.mark.parametrize("value, run", [(float("nan"), "A"), (float("inf"), "B")])
def test_non_finite_values_are_rejected_naming_case_and_run(value, run):
    a, b = runs([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    (a if run == "A" else b)["case01"] = value
    with pytest.raises(DataError, match=f"hd95_1 of case case01 in run {run} is {value}"):
        paired_comparison(a, b, "hd95_1")


@pytest.mark.parametrize("arguments, name", [({"resamples": 99}, "resamples=99"),
                                             ({"confidence": 1.0}, "confidence=1.0"),
                                             ({"confidence": 0.0}, "confidence=0.0")])
def test_bad_arguments_are_rejected_naming_the_argument(arguments, name):
    with pytest.raises(ConfigError, match=f"^{name.split('=')[0]} must .*Received: {name}$"):
        paired_comparison(*shifted_runs(), "dice", **arguments)


def test_comparison_is_frozen():
    result = paired_comparison(*shifted_runs(), "dice", resamples=RESAMPLES)
    assert isinstance(result, PairedComparison)
    with pytest.raises(AttributeError):
        result.p_value = 0.0
    with pytest.raises(ValueError):
        result.a[0] = 1.0


@pytest.mark.parametrize("shift", [0.05, 0.0])  # 0.0: every case a tie, all differences 0
def test_paired_plot_writes_a_png(tmp_path, shift):
    result = paired_comparison(*shifted_runs(shift), "dice", resamples=RESAMPLES)
    path = paired_plot(result, tmp_path / "plots" / "dice.png", labels=("baseline", "new"))
    assert path == tmp_path / "plots" / "dice.png"
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert 600 <= picture.width <= 2000 and 300 <= picture.height <= 1200


def test_format_table_holds_the_numbers_and_the_direction():
    result = paired_comparison(*shifted_runs(-0.05), "vi", resamples=RESAMPLES, confidence=0.9)
    table = format_table(result, labels=("baseline", "new"))
    for text in ("vi (lower is better)", "30", f"{result.a.mean():.4f}", f"{result.b.mean():.4f}",
                 f"{result.mean_difference:+.4f}", f"[{result.ci_low:+.4f}, {result.ci_high:+.4f}]",
                 f"{result.p_value:.3g}", "90% CI", "new - baseline", "30 / 0 / 0"):
        assert text in table
    lines = table.splitlines()
    columns = {lines[0].index("vi ("), lines[1].index("30"), lines[-1].index("30 / 0 / 0")}
    assert len(columns) == 1  # the values start in one column
    assert "higher is better" in format_table(paired_comparison(*shifted_runs(), "dice", resamples=RESAMPLES))


def test_format_table_of_a_small_hand_computed_case():
    table = format_table(paired_comparison({"x": 0.5, "y": 0.7}, {"x": 0.6, "y": 0.9}, "dice", resamples=RESAMPLES))
    for text in ("cases", "2", "mean A", "0.6000", "mean B", "0.7500", "mean difference (B - A)", "+0.1500",
                 "95% CI (bootstrap)", "[+0.1000, +0.2000]", "Wilcoxon p", "0.5", "B better / worse / ties",
                 "2 / 0 / 0"):
        assert text in table
