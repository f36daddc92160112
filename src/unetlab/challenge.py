"""The ISBI 2012 challenge's scores of membrane probability maps, as the challenge computes them.

The challenge (Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation algorithms
for connectomics", Front. Neuroanat. 2015) scores a stack of non-membrane ("cell") probability maps
against binary labels with Fiji's `trainableSegmentation.metrics`; this module follows those
definitions (read in the Fiji sources, not copied):

- the proposal is binarized at each threshold of a grid (`PixelError.getPrecisionRecallStats(min,
  max, step)`: `th = min; th <= max; th += step`, so the default grid 0.0, 0.1, ..., 1.0 ends at
  0.9999999999999999 and a probability of exactly 1 is a cell at every threshold): a pixel is a cell
  where its probability is > the threshold; a label pixel is a cell where it is > 0;
- precision and recall of a count table as `ClassificationStatistics`: precision 1 without false
  positives, recall 1 without false negatives, F-score their harmonic mean (0 when both are 0);
- `pixel_error`: 1 - the maximal F-score, over the thresholds, of the cell pixels, the counts pooled
  over all slices;
- `rand_error`: 1 - the maximal F-score of the foreground-restricted Rand index with N^2
  normalisation (`RandError.getForegroundRestrictedRandIndexStatsN2`): segments are the 4-connected
  cell components of the label and of the binarized proposal; only label cell pixels count; a
  proposed membrane pixel among them is a segment of its own; the pair counts are pooled over slices;
- `v_rand` and `v_info` (the leaderboard since 2016, `RandError.getMaximalVRandAfterThinning(0, 1,
  0.1, true)` and `VariationOfInformation.getMaximalVInfoAfterThinning`): the proposal's membranes
  are first thinned to 1-pixel lines by a watershed flooded from its cell components (4-connected),
  then V_rand is the foreground-restricted Rand F-score and V_info its information-theoretic analogue
  (mutual information over the entropy of each segmentation, Fiji's `foregroundRestrictedFscore`),
  each averaged over the slices, and the maximum over the thresholds is reported (higher is better).

Each score comes with the threshold that achieved it (the first of equal ones, as Fiji keeps it) and
the whole curve. scikit-image's `adapted_rand_error` counts pairs as n(n-1) where the challenge counts
N^2, so it is not used for the figure; `tests` check both against each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import ConfigError, DataError

FIJI_GRID = (0.0, 1.0, 0.1)  # the challenge's thresholds: min, max, step (Fiji's loop, see thresholds())
SCORES = ("pixel_error", "rand_error", "v_rand", "v_info")  # errors: lower is better; v_*: higher
ERRORS = ("pixel_error", "rand_error")


@dataclass
class ChallengeScore:
    """One figure of the challenge, the threshold that gave it, and its value at every threshold."""
    value: float
    threshold: float
    curve: list[tuple[float, float]] = field(default_factory=list)


def thresholds(minimum: float = FIJI_GRID[0], maximum: float = FIJI_GRID[1], step: float = FIJI_GRID[2],
               key: str = "thresholds") -> list[float]:
    """Fiji's threshold grid: `minimum`, then adding `step` while <= `maximum` (in float64, as Fiji
    does, so 0.1 x 10 sums to 0.9999999999999999). A grid with no threshold is a one-line error naming `key`."""
    if not (0.0 <= minimum <= maximum <= 1.0) or not step > 0:
        raise ConfigError(f"{key} must be [MIN, MAX, STEP] with 0 <= MIN <= MAX <= 1 and STEP > 0 (a grid with at "
                        f"least one threshold). Received: {key}=[{minimum}, {maximum}, {step}]")
    grid, value = [], float(minimum)
    while value <= maximum:
        grid.append(value)
        value += step
    return grid


def cell_probability(probabilities: np.ndarray) -> np.ndarray:
    """The challenge's proposal from a binary cell/membrane model's probabilities: 1 - the membrane's of
    (H, W, 1) sigmoid ones, class 0's of (H, W, 2) softmax ones (class 0 the cells, data.objects=background)."""
    return 1.0 - probabilities[..., 0] if probabilities.shape[-1] == 1 else probabilities[..., 0]


def checked_slice(cells: np.ndarray, probability: np.ndarray, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """(label cells as bool, probability as float64) after checking them, one-line errors naming `name`:
    the label must be binary (0 and one other value), the probability of its shape and in [0, 1]."""
    cells, probability = np.asarray(cells), np.asarray(probability)
    values = np.unique(cells)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise DataError(f"{name}: the challenge's scores need a binary label (0 = membrane, one other value = "
                        f"cell); it holds {values.size} values: {shown}")
    if probability.shape != cells.shape:
        raise DataError(f"{name}: its probability map is {'x'.join(map(str, probability.shape))} but its label "
                        f"is {'x'.join(map(str, cells.shape))}: they must be the same 2-D size")
    if cells.ndim != 2:
        raise DataError(f"{name}: the challenge's scores take 2-D slices; got shape {cells.shape}")
    if not np.all(np.isfinite(probability)):
        raise DataError(f"{name}: probabilities must be in [0, 1]; this map holds NaN or infinity")
    if probability.min() < 0 or probability.max() > 1:
        raise DataError(f"{name}: probabilities must be in [0, 1]; this map holds values in "
                        f"[{probability.min():g}, {probability.max():g}]")
    return cells > 0, probability.astype(np.float64)


@dataclass
class SliceTally:
    """What one slice adds at each threshold of `grid`: the cell-pixel counts and the Rand pair counts
    (tp, fp, fn; pooled over slices by summing) and its V_rand and V_info (averaged over slices)."""
    grid: list[float]
    pixels: np.ndarray  # (thresholds, 3)
    pairs: np.ndarray  # (thresholds, 3)
    v_rand: np.ndarray  # (thresholds,)
    v_info: np.ndarray  # (thresholds,)


def tally(cells: np.ndarray, probability: np.ndarray, grid: Sequence[float] | None = None,
          name: str = "image") -> SliceTally:
    """One slice's SliceTally: `cells` its binary label (cell > 0, membrane 0), `probability` its cell
    (non-membrane) probability map, `grid` the thresholds (Fiji's by default)."""
    grid = _checked_grid(grid)
    label, probability = checked_slice(cells, probability, name)
    truth = _components(label)
    pixels, pairs, v_rand, v_info = [], [], [], []
    for threshold in grid:
        proposed = probability > threshold
        segments = _components(proposed)
        thinned = Overlap.of(truth, thinned_segments(proposed, segments))
        pixels.append(_pixel_counts(label, proposed))
        pairs.append(rand_pair_counts(Overlap.of(truth, segments)))
        v_rand.append(f_score(*rand_pair_counts(thinned)))
        v_info.append(information_f_score(thinned))
    return SliceTally(grid, np.array(pixels), np.array(pairs), np.array(v_rand), np.array(v_info))


def scores_of(tallies: Sequence[SliceTally]) -> dict[str, ChallengeScore]:
    """The four scores of the slices tallied (on one grid): the errors from their summed counts, the V
    scores their means, each at its best threshold."""
    if not tallies:
        raise DataError("the challenge's scores need at least one slice")
    grid = tallies[0].grid
    pixels, pairs = sum(t.pixels for t in tallies), sum(t.pairs for t in tallies)
    values = {"pixel_error": [1.0 - f_score(*counts) for counts in pixels],
              "rand_error": [1.0 - f_score(*counts) for counts in pairs],
              "v_rand": np.mean([t.v_rand for t in tallies], axis=0),
              "v_info": np.mean([t.v_info for t in tallies], axis=0)}
    return {name: _best([(threshold, float(value)) for threshold, value in zip(grid, values[name])],
                        lower=name in ERRORS) for name in SCORES}


def challenge_scores(cells: Sequence[np.ndarray], probabilities: Sequence[np.ndarray],
                     grid: Sequence[float] | None = None, names: Sequence[str] | None = None) -> dict[str, ChallengeScore]:
    """The four scores of a stack: `cells` the binary labels (cell > 0, membrane 0), `probabilities`
    the cell (non-membrane) probability maps of the same slices, `grid` the thresholds (Fiji's by default)."""
    if len(cells) != len(probabilities) or not len(cells):
        raise DataError(f"the challenge's scores need one probability map per label: got {len(cells)} labels and "
                        f"{len(probabilities)} maps")
    names = list(names or (f"slice {index}" for index in range(len(cells))))
    return scores_of([tally(label, probability, grid, name)
                      for label, probability, name in zip(cells, probabilities, names)])


def rand_error(cells: Sequence[np.ndarray], probabilities: Sequence[np.ndarray], grid: Sequence[float] | None = None,
               names: Sequence[str] | None = None) -> ChallengeScore:
    """The stack's `rand_error` alone, as `scores_of` pools it, without the thinning that V_rand and V_info
    need: the fast figure that a choice among postprocessings compares (`unetlab.postprocess.choose`)."""
    grid = _checked_grid(grid)
    pairs = np.zeros((len(grid), 3))
    for index, (label, probability) in enumerate(zip(cells, probabilities)):
        label, probability = checked_slice(label, probability, names[index] if names else f"slice {index}")
        truth = _components(label)
        pairs += [rand_pair_counts(Overlap.of(truth, _components(probability > threshold))) for threshold in grid]
    return _best([(threshold, 1.0 - f_score(*counts)) for threshold, counts in zip(grid, pairs)], lower=True)


def f_score(tp: float, fp: float, fn: float) -> float:
    """F-score of counts as Fiji's ClassificationStatistics: no false positive is precision 1, no false negative recall 1."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def thinned_segments(proposed_cells: np.ndarray, markers: np.ndarray | None = None) -> np.ndarray:
    """The proposal's segments after border thinning: its 4-connected cell components (`markers`, when
    already labelled) flooded over its membranes by a watershed (4-connected) that leaves 1-pixel lines
    (0) where two segments meet."""
    from skimage.segmentation import watershed

    markers = _components(proposed_cells) if markers is None else markers
    if not markers.any():
        return markers  # no cell: every pixel is membrane, a segment of its own
    return watershed((~proposed_cells).astype(np.uint8), markers, connectivity=1, watershed_line=True)


@dataclass
class Overlap:
    """Over the label's cell pixels (truth > 0), n of them: the nonzero counts n_ij of label segment i
    and proposal segment j > 0, the label segments' sizes a_i, the proposal segments' b_j (j > 0), and
    the proposal-0 (membrane) pixels, each a segment of its own."""
    joint: np.ndarray
    rows: np.ndarray
    columns: np.ndarray
    singletons: float
    n: float

    @classmethod
    def of(cls, truth: np.ndarray, proposal: np.ndarray) -> "Overlap":
        inside = truth > 0
        a, b = truth[inside].astype(np.int64), proposal[inside].astype(np.int64)
        assigned = b > 0
        pairs = a[assigned] * (int(b.max(initial=0)) + 1) + b[assigned]
        counts = [np.unique(values, return_counts=True)[1].astype(np.float64) for values in (pairs, a, b[assigned])]
        return cls(*counts, singletons=float(np.sum(~assigned)), n=float(a.size))


def rand_pair_counts(overlap: Overlap) -> np.ndarray:
    """(tp, fp, fn) of the foreground-restricted Rand index with N^2 normalisation, in pixel pairs
    (Fiji's normalised sums times n^2): tp = sum n_ij^2, fp = sum b_j^2 - tp, fn = sum a_i^2 - tp."""
    tp = float(np.sum(overlap.joint ** 2) + overlap.singletons)
    return np.array([tp, float(np.sum(overlap.columns ** 2) + overlap.singletons) - tp,
                     float(np.sum(overlap.rows ** 2)) - tp])


def information_f_score(overlap: Overlap) -> float:
    """Fiji's foreground-restricted information-theoretic score (`foregroundRestrictedFscore`):
    precision I(A;B)/H(A) and recall I(A;B)/H(B) (A the label's segments, B the proposal's), their
    F-score; Fiji's rules: H(A) = 0 gives precision 0 and recall 1, H(B) = 0 precision 1 and recall 0."""
    n = overlap.n
    if n == 0:
        return 1.0  # no cell in the label: nothing to score (Fiji divides by zero)

    def entropy(counts: np.ndarray) -> float:  # of segments of these sizes, and the singletons
        return -float(np.sum(counts / n * np.log(counts / n))) + overlap.singletons / n * math.log(n)

    h_label = -float(np.sum(overlap.rows / n * np.log(overlap.rows / n)))
    h_proposal, h_joint = entropy(overlap.columns), entropy(overlap.joint)
    information = h_label + h_proposal - h_joint
    if h_proposal == 0:
        precision, recall = 1.0, 0.0
    elif h_label == 0:
        precision, recall = 0.0, 1.0
    else:
        precision, recall = information / h_label, information / h_proposal
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _pixel_counts(label: np.ndarray, proposed: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) of the cell pixels."""
    return np.array([np.sum(label & proposed), np.sum(~label & proposed), np.sum(label & ~proposed)], np.float64)


def _checked_grid(grid: Sequence[float] | None) -> list[float]:
    """The thresholds (Fiji's by default); an empty grid is a one-line error."""
    grid = thresholds() if grid is None else list(grid)
    if not grid:
        raise ConfigError("the threshold grid is empty: give at least one threshold")
    return grid


def _components(cells: np.ndarray) -> np.ndarray:
    """4-connected components 1..N of the cell pixels, 0 on membranes."""
    from scipy import ndimage

    return ndimage.label(cells)[0]


def _best(curve: list[tuple[float, float]], lower: bool) -> ChallengeScore:
    """The best value of a curve and its first threshold (Fiji keeps the first of equal F-scores)."""
    best = min(curve, key=lambda point: point[1]) if lower else max(curve, key=lambda point: point[1])
    return ChallengeScore(value=best[1], threshold=best[0], curve=curve)
