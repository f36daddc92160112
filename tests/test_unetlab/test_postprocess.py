"""unetlab.postprocess: the watershed cuts a merge through a membrane gap and leaves whole cells alone."""

import numpy as np
import pytest

from unetlab import challenge
from unetlab.postprocess import Watershed, candidates, choose, cut, from_record, with_cells


def two_cells_through_a_gap(gap: slice = slice(18, 22)) -> tuple[np.ndarray, np.ndarray]:
    """(label, proposal): two 40x40 cells framed by 3-pixel membranes, side by side; the proposal misses
    the rows `gap` of the membrane between them, so thresholded it is one cell."""
    label = np.zeros((46, 89), np.uint8)
    label[3:43, 3:43] = label[3:43, 46:86] = 255
    proposal = (label > 0).astype(np.float64)
    proposal[3:43][gap, 43:46] = 1.0
    return label, proposal


def test_a_merge_through_a_gap_is_cut_and_the_rand_error_vanishes():
    label, proposal = two_cells_through_a_gap()
    before = challenge.challenge_scores([label], [proposal])["rand_error"].value
    cut = Watershed(threshold=0.5, h=2.0, sigma=0.0).apply(proposal)
    after = challenge.challenge_scores([label], [cut])
    assert before == pytest.approx(1 / 3, abs=0.01)  # one proposed cell for two: F = 2/3
    assert after["rand_error"].value < 0.01 and after["pixel_error"].value < 0.01
    lines = cut == 0
    assert lines[21:25, 43:46].any() and not lines[3:43, 3:42].any() and not lines[3:43, 47:86].any()


def test_the_map_keeps_its_probabilities_off_the_lines():
    label, proposal = two_cells_through_a_gap()
    proposal = proposal * 0.9 + 0.05
    watershed = Watershed(threshold=0.5, h=2.0, sigma=1.0)
    lines, cut = watershed.lines(proposal), watershed.apply(proposal)
    assert lines.any() and np.all(cut[lines] == 0.0)
    np.testing.assert_allclose(cut[~lines], proposal[~lines], rtol=1e-6)
    assert cut.dtype == np.float32


@pytest.mark.parametrize("h", [2.0, 6.0])
def test_one_round_cell_and_an_all_membrane_map_are_left_whole(h):
    yy, xx = np.mgrid[:64, :64]
    disk = ((yy - 32) ** 2 + (xx - 32) ** 2 < 25 ** 2).astype(np.float64)
    assert not Watershed(threshold=0.5, h=h, sigma=1.0).lines(disk).any()
    membrane = np.zeros((16, 16))
    np.testing.assert_array_equal(Watershed(h=h).apply(membrane), membrane)


def test_a_larger_h_splits_less():
    """A neck half as wide as the cells, the right cell narrowed to 24 pixels: its distance peak rises
    between 3 and 4 pixels above the saddle at the neck, so seeds of h=2 split the two, h=4 does not."""
    _, proposal = two_cells_through_a_gap(slice(10, 30))
    proposal[:, 70:] = 0.0
    assert Watershed(threshold=0.5, h=2.0, sigma=0.0).lines(proposal).any()
    assert not Watershed(threshold=0.5, h=4.0, sigma=0.0).lines(proposal).any()


def test_with_cells_writes_the_cells_back_in_the_models_layout():
    cells = np.array([[0.2, 1.0]], np.float32)
    np.testing.assert_allclose(with_cells(np.zeros((1, 2, 1)), cells)[..., 0], [[0.8, 0.0]])
    np.testing.assert_allclose(with_cells(np.zeros((1, 2, 2)), cells), [[[0.2, 0.8], [1.0, 0.0]]])
    for layout in (np.zeros((1, 2, 1)), np.zeros((1, 2, 2))):
        np.testing.assert_allclose(challenge.cell_probability(with_cells(layout, cells)), cells)


def test_choose_picks_the_cut_that_lowers_the_rand_error_and_records_it():
    label, proposal = two_cells_through_a_gap()
    cutting, too_high = Watershed(threshold=0.5, h=2.0, sigma=0.0), Watershed(threshold=0.5, h=50.0, sigma=0.0)
    choice = choose([label > 0], [proposal], [too_high, cutting])
    assert choice.watershed == cutting and choice.uncut_rand_error == pytest.approx(1 / 3, abs=0.01)
    assert choice.rand_error < 0.01 and [error for _, error in choice.trials][0] == pytest.approx(choice.uncut_rand_error)
    assert from_record(choice.as_dict()) == cutting and choice.as_dict()["method"] == "watershed"


def test_choose_keeps_the_map_when_no_cut_beats_it():
    """One whole cell: every cut only splits it, so the choice is no cut, recorded as method none."""
    yy, xx = np.mgrid[:64, :64]
    neck = (((yy - 32) ** 2 + (xx - 18) ** 2 < 14 ** 2) | ((yy - 32) ** 2 + (xx - 46) ** 2 < 14 ** 2)
            | ((abs(yy - 32) < 5) & (xx > 18) & (xx < 46)))
    choice = choose([neck], [neck.astype(np.float64)], candidates([0.5], [1.0, 2.0], [0.0]))
    assert any(error > 0 for _, error in choice.trials)  # the cuts split the one cell
    assert choice.watershed is None and choice.rand_error == choice.uncut_rand_error == 0.0
    assert choice.as_dict() == {"method": "none"} and from_record(choice.as_dict()) is None and from_record(None) is None


def test_candidates_are_every_combination_in_order():
    grid = candidates([0.3, 0.5], [2.0, 4.0], [1.0])
    assert [(w.threshold, w.h, w.sigma) for w in grid] == [(0.3, 2.0, 1.0), (0.3, 4.0, 1.0), (0.5, 2.0, 1.0),
                                                           (0.5, 4.0, 1.0)]
    assert str(grid[0]) == "watershed threshold=0.3 h=2 sigma=1"


def test_cut_applies_a_watershed_to_a_models_layout_and_refuses_more_than_two_classes():
    label, proposal = two_cells_through_a_gap()
    watershed = Watershed(threshold=0.5, h=2.0, sigma=0.0)
    sigmoid = (1.0 - proposal)[..., None]
    np.testing.assert_allclose(challenge.cell_probability(cut(sigmoid, watershed)), watershed.apply(proposal))
    assert cut(sigmoid, None) is sigmoid
    with pytest.raises(ValueError, match="this model has 3 classes"):
        cut(np.zeros((4, 4, 3)), watershed)
