"""Paired comparison of two runs scored on the same cases: is run B better than run A on a metric?

`paired_comparison` takes each run's per-case values of one metric (case name -> value, e.g. a column of
per_image.csv or per_case.csv) and returns the mean difference B - A with a percentile bootstrap confidence
interval (cases resampled with replacement), the two-sided Wilcoxon signed-rank p-value of the differences, and
how many cases B wins, loses and ties in the metric's own direction (`higher_is_better`). `paired_plot` draws
it, `format_table` prints it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

# Metrics where smaller is better; Hausdorff distances (hd95, hd95_1, ...) are too (`higher_is_better`).
LOWER_IS_BETTER = frozenset({"misclassified", "adapted_rand_error", "vi", "vi_split", "vi_merge", "pixel_error",
                             "rand_error"})
MIN_RESAMPLES = 100
_CHUNK_ELEMENTS = 1 << 22  # bootstrap indices drawn at a time (32 MB of int64)


def higher_is_better(metric: str) -> bool:
    """False for `LOWER_IS_BETTER` and Hausdorff distances (a name starting or ending with "hd95"), else True."""
    return not (metric in LOWER_IS_BETTER or metric.startswith("hd95") or metric.endswith("hd95"))


@dataclass(frozen=True, eq=False)
class PairedComparison:
    """One metric of runs A and B on the same cases; differences are B - A."""

    metric: str
    cases: tuple[str, ...]  # sorted
    a: np.ndarray  # per-case values of run A, in `cases` order
    b: np.ndarray
    higher_is_better: bool
    mean_difference: float
    ci_low: float  # percentile bootstrap interval of the mean difference
    ci_high: float
    confidence: float
    p_value: float  # two-sided Wilcoxon signed-rank test of b - a; 1.0 when every difference is 0
    better: int  # cases where B beats A in the metric's direction
    worse: int
    ties: int
    resamples: int

    @property
    def differences(self) -> np.ndarray:
        return self.b - self.a

    def summary(self) -> dict[str, float]:
        """Flat numbers (MLflow metrics): means, mean difference, interval, p-value, case counts."""
        return {"mean_a": float(self.a.mean()), "mean_b": float(self.b.mean()),
                "mean_difference": self.mean_difference, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "better": float(self.better), "worse": float(self.worse),
                "ties": float(self.ties), "num_cases": float(len(self.cases))}

    def rows(self) -> list[dict]:
        """Per case (a CSV's rows): case, a, b, difference (b - a)."""
        return [{"case": case, "a": float(a), "b": float(b), "difference": float(b - a)}
                for case, a, b in zip(self.cases, self.a, self.b)]


def paired_comparison(a: dict[str, float], b: dict[str, float], metric: str, *, resamples: int = 10000,
                      confidence: float = 0.95, seed: int = 0) -> PairedComparison:
    """Compare `metric` of run B against run A, case by case; both must hold the same cases (at least 2)."""
    if resamples < MIN_RESAMPLES:
        raise ConfigError(f"resamples must be at least {MIN_RESAMPLES}. Received: resamples={resamples}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95. Received: confidence={confidence}")
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise DataError(f"the runs must be evaluated on the same cases: {_some(only_a)} only in A, "
                        f"{_some(only_b)} only in B")
    cases = tuple(sorted(a))
    if len(cases) < 2:
        raise DataError(f"a paired comparison needs at least 2 common cases; the runs have {len(cases)}")
    values_a, values_b = _values(a, cases, metric, "A"), _values(b, cases, metric, "B")
    differences = values_b - values_a
    low, high = _bootstrap_interval(differences, resamples, confidence, seed)
    direction = higher_is_better(metric)
    gains = differences if direction else -differences
    return PairedComparison(
        metric=metric, cases=cases, a=values_a, b=values_b, higher_is_better=direction,
        mean_difference=float(differences.mean()), ci_low=low, ci_high=high, confidence=float(confidence),
        p_value=_wilcoxon(differences), better=int((gains > 0).sum()), worse=int((gains < 0).sum()),
        ties=int((gains == 0).sum()), resamples=int(resamples))


def _some(names: list) -> str:
    """'2 case(s) (x, y)': a count and up to 3 examples."""
    examples = ", ".join(map(str, names[:3])) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} case(s)" + (f" ({examples})" if names else "")


def _values(scores: dict, cases: tuple, metric: str, run: str) -> np.ndarray:
    values = np.empty(len(cases), np.float64)
    for i, case in enumerate(cases):
        try:
            values[i] = float(scores[case])
        except (TypeError, ValueError):
            raise DataError(f"{metric} of case {case} in run {run} is not a number: {scores[case]!r}") from None
        if not math.isfinite(values[i]):
            raise DataError(f"{metric} of case {case} in run {run} is {values[i]}: every value must be finite "
                            "(a distance is infinite where a prediction or its truth is empty: compare by another "
                            "metric, e.g. dice)")
    values.setflags(write=False)
    return values


def _bootstrap_interval(differences: np.ndarray, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean difference over `resamples` resamplings of the cases with replacement
    (row r of the indices is rng.integers(0, n, n), the r-th draw of default_rng(seed), however it is chunked)."""
    rng, n = np.random.default_rng(seed), len(differences)
    rows = max(1, _CHUNK_ELEMENTS // n)
    means = np.concatenate([differences[rng.integers(0, n, size=(min(rows, resamples - start), n))].mean(axis=1)
                            for start in range(0, resamples, rows)])
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def _wilcoxon(differences: np.ndarray) -> float:
    """Two-sided p-value of scipy's Wilcoxon signed-rank test (zeros dropped); 1.0 when all differences are 0."""
    from scipy.stats import wilcoxon

    if not differences.any():
        return 1.0
    with warnings.catch_warnings():  # "sample size too small", "exact p-value ... zeros": the method scipy picks
        warnings.simplefilter("ignore")
        return float(wilcoxon(differences).pvalue)


def paired_plot(comparison: PairedComparison, path, labels: tuple[str, str] = ("A", "B")) -> Path:
    """PNG at `path`: each case's A -> B line (green: B better, red: worse, grey: tie) with the means; and the
    differences' histogram with the bootstrap interval shaded and 0 marked."""
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state (as unetlab.visualize)

    c = comparison
    gains = c.differences if c.higher_is_better else -c.differences
    colours = np.where(gains > 0, "tab:green", np.where(gains < 0, "tab:red", "grey"))
    figure = Figure(figsize=(11, 5))
    pairs, spread = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    segments = np.stack([np.column_stack([np.zeros_like(c.a), c.a]), np.column_stack([np.ones_like(c.b), c.b])], 1)
    pairs.add_collection(LineCollection(segments, colors=colours, alpha=0.6, linewidths=1))
    pairs.plot([0, 1], [c.a.mean(), c.b.mean()], "k-o", linewidth=2.5, markersize=8, label="mean", zorder=3)
    pairs.set_xticks([0, 1], labels)
    pairs.set_xlim(-0.25, 1.25)
    pairs.autoscale(axis="y")
    pairs.set_ylabel(c.metric)
    pairs.set_title(f"{len(c.cases)} cases: {labels[1]} better {c.better}, worse {c.worse}, ties {c.ties}",
                    fontsize=10)
    pairs.legend(loc="best")

    spread.hist(c.differences, bins=min(40, max(5, len(c.cases) // 2)), color="tab:blue", alpha=0.7)
    spread.axvspan(c.ci_low, c.ci_high, color="tab:orange", alpha=0.3, zorder=0,
                   label=f"{_percent(c.confidence)} CI of the mean")
    spread.axvline(c.mean_difference, color="tab:orange", linewidth=2, label="mean difference")
    spread.axvline(0.0, color="black", linestyle="--", linewidth=1, label="0")
    direction = "higher" if c.higher_is_better else "lower"
    spread.set_xlabel(f"{c.metric} difference ({labels[1]} - {labels[0]}; {direction} is better)")
    spread.set_ylabel("cases")
    spread.legend(loc="best", fontsize=9)

    figure.suptitle(f"{c.metric}: mean difference {c.mean_difference:+.4f}, {_percent(c.confidence)} CI "
                    f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}], Wilcoxon p = {c.p_value:.3g}")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def format_table(comparison: PairedComparison, labels: tuple[str, str] = ("A", "B")) -> str:
    """The comparison as aligned 'name  value' lines (values to 4 decimals, p to 3 significant digits)."""
    c, (a, b) = comparison, labels
    direction = "higher is better" if c.higher_is_better else "lower is better"
    lines = [("metric", f"{c.metric} ({direction})"),
             ("cases", f"{len(c.cases)}"),
             (f"mean {a}", f"{c.a.mean():.4f}"),
             (f"mean {b}", f"{c.b.mean():.4f}"),
             (f"mean difference ({b} - {a})", f"{c.mean_difference:+.4f}"),
             (f"{_percent(c.confidence)} CI (bootstrap)", f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]"),
             ("Wilcoxon p", f"{c.p_value:.3g}"),
             (f"{b} better / worse / ties", f"{c.better} / {c.worse} / {c.ties}")]
    width = max(len(name) for name, _ in lines) + 2
    return "\n".join(f"{name:<{width}}{value}" for name, value in lines)


def _percent(confidence: float) -> str:
    return f"{100 * confidence:g}%"
