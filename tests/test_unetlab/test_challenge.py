"""unetlab.challenge: the ISBI 2012 scores on hand-made label maps whose values are worked out here on
paper, and against scikit-image where it computes a part of them."""

import math

import numpy as np
import pytest

from unetlab.challenge import (Overlap, challenge_scores, information_f_score, rand_error, rand_pair_counts,
                               thinned_segments, thresholds)
from unetlab.errors import ConfigError, DataError

# 3x7: cell A in columns 0-2, a 1-pixel membrane in column 3, cell B in columns 4-6 (18 cell pixels).
CELLS = np.full((3, 7), 255, np.uint8)
CELLS[:, 3] = 0
PERFECT = CELLS / 255.0


def scores(probability, cells=CELLS, **kwargs):
    result = challenge_scores([cells], [probability], **kwargs)
    return {name: score.value for name, score in result.items()}


def f(precision, recall):
    return 2 * precision * recall / (precision + recall)


def test_the_grid_is_fijis_loop_so_a_probability_of_one_is_a_cell_at_every_threshold():
    grid = thresholds()
    assert len(grid) == 11 and grid[0] == 0.0 and grid[3] == 0.30000000000000004 and grid[-1] == 0.9999999999999999
    assert thresholds(0.5, 0.5, 0.1) == [0.5]
    all_cell = challenge_scores([CELLS], [np.ones((3, 7))])["pixel_error"].curve
    assert [error for _, error in all_cell] == pytest.approx([1 / 13] * 11)  # never all-membrane


def test_a_perfect_prediction_scores_zero_errors_and_full_v_scores():
    assert scores(PERFECT) == {"pixel_error": 0.0, "rand_error": 0.0, "v_rand": 1.0, "v_info": 1.0}


def test_one_split_cell():
    split = PERFECT.copy()
    split[:, 1] = 0  # a false membrane through A: A1 (3 pixels), 3 singletons, A2 (3)
    result = scores(split)
    # pixels: 15 of 18 cell pixels found, no false cell: P = 1, R = 5/6, F = 10/11
    assert result["pixel_error"] == pytest.approx(1 / 11)
    # pairs: tp = 3^2 + 3^2 + 9^2 + 3 singletons = 102 = sum b_j^2 (P = 1); sum a_i^2 = 2 * 81: R = 17/27
    assert result["rand_error"] == pytest.approx(1 - f(1, 17 / 27)) and result["rand_error"] == pytest.approx(5 / 22)
    assert result["v_rand"] == pytest.approx(17 / 22)  # 1-pixel lines already: thinning keeps them
    # V_info: each proposed segment lies in one cell, so I = H(A) = log 2; H(B) over sizes 3, 3, 9 and 3 x 1 of 18
    h_b = 2 * (3 / 18) * math.log(6) + 0.5 * math.log(2) + 3 * (1 / 18) * math.log(18)
    assert result["v_info"] == pytest.approx(f(1, math.log(2) / h_b))


def test_one_merge_through_a_one_pixel_gap():
    merged = PERFECT.copy()
    merged[1, 3] = 1  # the gap joins A and B; the gap pixel itself is membrane in the label: not counted
    result = scores(merged)
    assert result["pixel_error"] == pytest.approx(1 / 37)  # P = 18/19, R = 1: the lenient metric barely moves
    assert result["rand_error"] == pytest.approx(1 / 3)  # tp = 2 * 81, sum b^2 = 18^2: P = 1/2, R = 1
    assert result["v_rand"] == pytest.approx(2 / 3)
    assert result["v_info"] == 0.0  # one proposed segment: H(B) = 0, Fiji's precision 1, recall 0


def test_all_membrane_and_all_cell_predictions():
    membrane = scores(np.zeros((3, 7)))
    assert membrane["pixel_error"] == 1.0  # no cell found: R = 0
    assert membrane["rand_error"] == pytest.approx(0.8)  # 18 singletons: tp = 18 = sum b^2, sum a^2 = 162
    assert membrane["v_rand"] == pytest.approx(0.2)
    assert membrane["v_info"] == pytest.approx(f(1, math.log(2) / math.log(18)))
    cell = scores(np.ones((3, 7)))
    assert cell["pixel_error"] == pytest.approx(1 / 13)  # the 3 membrane pixels false cells: P = 6/7
    assert cell["rand_error"] == pytest.approx(1 / 3) and cell["v_info"] == 0.0


def test_a_threshold_that_only_the_sweep_finds():
    unsure = np.where(CELLS > 0, 0.3, 0.1)  # all below 0.5: a 0.5 threshold sees only membrane
    result = challenge_scores([CELLS], [unsure])
    assert {name: score.value for name, score in result.items()} == {
        "pixel_error": 0.0, "rand_error": 0.0, "v_rand": 1.0, "v_info": 1.0}
    assert {score.threshold for score in result.values()} == {0.1}  # the first perfect one (0.2 is too)
    at_half = dict(result["pixel_error"].curve)[0.5]
    assert at_half == 1.0


def test_thinning_gives_a_thick_predicted_membrane_back_to_its_cells():
    thick = np.ones((3, 7))
    thick[:, 2:5] = 0  # membrane 3 pixels wide: columns 2 and 4 are cell pixels in the label
    segments = thinned_segments(thick > 0.5)
    assert (segments[:, 3] == 0).all() and (segments[:, :3] == segments[0, 0]).all()
    assert (segments[:, 4:] == segments[0, 6]).all() and segments[0, 0] != segments[0, 6]
    result = scores(thick)
    assert result["rand_error"] == pytest.approx(1 - 0.65)  # before thinning: 6 singletons
    assert result["v_rand"] == 1.0 and result["v_info"] == 1.0  # after: the cells exactly


def test_slices_pool_their_counts_for_the_errors_and_average_their_v_scores():
    split = PERFECT.copy()
    split[:, 1] = 0
    result = challenge_scores([CELLS, CELLS], [PERFECT, split])
    # pooled pairs: tp = 162 + 102, sum a^2 = 2 * 162, fp = 0: R = 22/27, F = 44/49
    assert result["rand_error"].value == pytest.approx(5 / 49)
    assert result["v_rand"].value == pytest.approx((1 + 17 / 22) / 2)


def relabel_singletons(proposal, truth):
    """The proposal with each 0 pixel inside the label's cells a segment of its own (for scikit-image)."""
    out = proposal.astype(np.int64).copy()
    holes = (out == 0) & (truth > 0)
    out[holes] = out.max() + 1 + np.arange(holes.sum())
    return out


def random_case(seed):
    from scipy import ndimage
    from skimage.segmentation import watershed

    rng = np.random.default_rng(seed)
    seeds = np.zeros((40, 40), np.int32)
    seeds[rng.integers(0, 40, 12), rng.integers(0, 40, 12)] = np.arange(1, 13)
    cells = watershed(np.zeros((40, 40)), seeds, watershed_line=True) > 0
    truth = ndimage.label(cells)[0]
    proposed = ndimage.binary_erosion(cells) | (rng.random((40, 40)) < 0.02)
    return truth, ndimage.label(proposed)[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rand_pair_counts_are_scikit_images_adapted_rand_error_counted_as_n_squared(seed):
    from skimage.metrics import adapted_rand_error

    truth, proposal = random_case(seed)
    tp, fp, fn = rand_pair_counts(Overlap.of(truth, proposal))
    n = float((truth > 0).sum())
    _, true_ratio, test_ratio = adapted_rand_error(truth, relabel_singletons(proposal, truth), ignore_labels=(0,))
    # scikit-image counts ordered pairs of distinct pixels (n^2 - n); the challenge all n^2
    assert true_ratio == pytest.approx((tp - n) / (tp + fn - n), rel=1e-12)
    assert test_ratio == pytest.approx((tp - n) / (tp + fp - n), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_information_score_is_built_on_scikit_images_conditional_entropies(seed):
    from skimage.metrics import variation_of_information

    truth, proposal = random_case(seed)
    h_test_given_truth, h_truth_given_test = variation_of_information(  # H(image1|image0), H(image0|image1)
        truth, relabel_singletons(proposal, truth), ignore_labels=(0,))
    sizes = np.unique(truth[truth > 0], return_counts=True)[1] / (truth > 0).sum()
    h_truth = -np.sum(sizes * np.log2(sizes))  # in bits, as scikit-image's (the score is a ratio)
    information = h_truth - h_truth_given_test
    expected = f(information / h_truth, information / (information + h_test_given_truth))
    assert information_f_score(Overlap.of(truth, proposal)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("cells, probability, message", [
    (np.array([[0, 1], [2, 1]]), np.zeros((2, 2)), r"^a.png: the challenge's scores need a binary label .*3 values: 0, 1, 2$"),
    (CELLS, np.zeros((3, 6)), r"^a.png: its probability map is 3x6 but its label is 3x7"),
    (CELLS, np.full((3, 7), 1.5), r"^a.png: probabilities must be in \[0, 1\]; this map holds values in \[1.5, 1.5\]$"),
    (CELLS, np.full((3, 7), np.nan), r"^a.png: probabilities must be in \[0, 1\]; this map holds NaN or infinity$"),
])
def test_bad_input_is_one_line_naming_the_image(cells, probability, message):
    with pytest.raises(DataError, match=message):
        challenge_scores([cells], [probability], names=["a.png"])


@pytest.mark.parametrize("grid", [(0.5, 0.4, 0.1), (0.0, 1.0, 0.0), (-0.1, 1.0, 0.1), (0.0, 1.5, 0.1)])
def test_a_grid_without_thresholds_is_one_line_naming_the_key(grid):
    with pytest.raises(ConfigError, match=r"^evaluate.thresholds must be \[MIN, MAX, STEP\] .*Received: "):
        thresholds(*grid, key="evaluate.thresholds")


@pytest.mark.parametrize("seed", [0, 1])
def test_rand_error_alone_is_the_stacks_rand_error(seed):
    """challenge.rand_error (no thinning, for a postprocessing choice) equals challenge_scores' figure and threshold."""
    rng = np.random.default_rng(seed)
    cases = [random_case(seed + offset) for offset in (0, 10)]
    labels = [truth > 0 for truth, _ in cases]
    maps = [np.clip((proposal > 0) * 0.8 + rng.normal(0, 0.2, proposal.shape), 0, 1) for _, proposal in cases]
    expected = challenge_scores(labels, maps)["rand_error"]
    found = rand_error(labels, maps)
    assert found.value == pytest.approx(expected.value, abs=1e-12) and found.threshold == expected.threshold
    np.testing.assert_allclose(np.array(found.curve), np.array(expected.curve), atol=1e-12)
