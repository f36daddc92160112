"""Per-case metrics in millimetres, checked against brute-force distances between surface points."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from unetlab.volume_metrics import case_scores, dice, hausdorff95, iou, surface, surface_dice


def ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    """Voxels within `radius` mm of `centre` (in voxels)."""
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((axis - c * s) ** 2 for axis, c, s in zip(grid, centre, spacing)) <= radius**2


def brute_force(prediction, truth, spacing):
    """Every surface point of one mask to every one of the other: the directed distances, independently of
    distance transforms (surface voxels: foreground with a background neighbour in the 3^n block)."""
    def points(mask):
        padded = np.pad(mask, 1)
        neighbourhood = np.ones((3,) * mask.ndim, bool)
        from scipy.ndimage import minimum_filter
        inner = minimum_filter(padded.astype(np.uint8), footprint=neighbourhood, mode="constant", cval=0)[
            tuple(slice(1, -1) for _ in mask.shape)].astype(bool)
        return np.argwhere(mask & ~inner) * np.asarray(spacing)
    distances = cdist(points(prediction), points(truth))
    return distances.min(axis=1), distances.min(axis=0)


def test_a_perfect_prediction_scores_one_and_zero_millimetres():
    mask = ball((12, 16, 16), (6, 8, 8), 5)
    assert dice(mask, mask) == iou(mask, mask) == surface_dice(mask, mask, (2, 1, 1), 0.5) == 1.0
    assert hausdorff95(mask, mask, (2, 1, 1)) == 0.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.8, 0.7)])
def test_surface_distances_match_brute_force_on_anisotropic_grids(spacing):
    truth = ball((14, 30, 30), (6, 14, 14), 8, spacing)
    prediction = ball((14, 30, 30), (7, 16, 12), 7, spacing)
    assert truth.any() and prediction.any()
    forward, backward = brute_force(prediction, truth, spacing)
    expected = max(np.percentile(forward, 95), np.percentile(backward, 95))
    assert hausdorff95(prediction, truth, spacing) == pytest.approx(expected, rel=1e-6)
    tolerance = 2.0
    expected_nsd = ((forward <= tolerance).sum() + (backward <= tolerance).sum()) / (len(forward) + len(backward))
    assert surface_dice(prediction, truth, spacing, tolerance) == pytest.approx(expected_nsd)


def test_two_points_are_as_far_apart_as_their_spacing_says():
    prediction, truth = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    prediction[0, 0, 0], truth[3, 4, 0] = True, True
    assert hausdorff95(prediction, truth, (1, 1, 1)) == pytest.approx(5.0)
    assert hausdorff95(prediction, truth, (2.0, 1.0, 1.0)) == pytest.approx(np.hypot(6, 4))
    assert surface_dice(prediction, truth, (1, 1, 1), 5.0) == 1.0 and surface_dice(prediction, truth, (1, 1, 1), 4.9) == 0.0


def test_overlap_scores_count_voxels():
    truth = np.zeros((14, 20, 20), bool)
    truth[2:8, 5:15, 5:15] = True
    shifted = np.roll(truth, 3, axis=0)  # 3 of 6 slices overlap
    assert dice(shifted, truth) == pytest.approx(0.5) and iou(shifted, truth) == pytest.approx(1 / 3)


def test_empty_masks_score_a_match_and_one_sided_ones_a_miss():
    empty, mask = np.zeros((4, 4), bool), np.eye(4, dtype=bool)
    assert dice(empty, empty) == 1.0 and hausdorff95(empty, empty, (1, 1)) == 0.0
    assert dice(mask, empty) == 0.0 and hausdorff95(mask, empty, (1, 1)) == float("inf")
    assert surface_dice(empty, mask, (1, 1), 1.0) == 0.0


def test_surface_voxels_are_the_foreground_next_to_background():
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    expected = mask.copy()
    expected[2, 2] = False
    np.testing.assert_array_equal(surface(mask), expected)


def test_case_scores_name_one_foreground_class_plainly_and_several_by_number():
    truth = np.zeros((6, 6), np.uint8)
    truth[1:3, 1:3], truth[4:6, 4:6] = 1, 2
    assert set(case_scores(truth == 1, truth == 1, (1, 1), 1)) == {"dice", "iou", "hd95", "surface_dice"}
    scores = case_scores(truth, truth, (1, 1), 3)
    assert scores["dice_1"] == scores["dice_2"] == 1.0 and scores["hd95_2"] == 0.0
