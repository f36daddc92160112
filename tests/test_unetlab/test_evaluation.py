"""Evaluation scores against scikit-learn on the same predictions."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from unetlab.evaluation import confusion_matrix, object_scores, scores

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("num_classes", [1, 4])
def test_scores_match_scikit_learn(num_classes):
    classes = max(num_classes, 2)
    truth = RNG.integers(0, classes, size=(40, 30))
    prediction = np.where(RNG.random((40, 30)) < 0.7, truth, RNG.integers(0, classes, size=(40, 30)))
    result = scores(confusion_matrix(truth, prediction, num_classes))
    labels = list(range(1, classes))
    kwargs = dict(labels=labels, average="macro", zero_division=1.0)
    assert result["dice"] == pytest.approx(f1_score(truth.ravel(), prediction.ravel(), **kwargs))
    assert result["iou"] == pytest.approx(jaccard_score(truth.ravel(), prediction.ravel(), **kwargs))
    assert result["precision"] == pytest.approx(precision_score(truth.ravel(), prediction.ravel(), **kwargs))
    assert result["recall"] == pytest.approx(recall_score(truth.ravel(), prediction.ravel(), **kwargs))
    assert result["misclassified"] == pytest.approx((truth != prediction).mean())
    if num_classes > 1:
        per_class = jaccard_score(truth.ravel(), prediction.ravel(), labels=list(range(classes)), average=None)
        assert [result[f"iou_class{c}"] for c in range(classes)] == pytest.approx(per_class)


def test_ignored_pixels_do_not_count():
    truth = np.array([[0, 1], [255, 255]])
    prediction = np.array([[0, 1], [1, 0]])
    assert scores(confusion_matrix(truth, prediction, 1, ignore_index=255))["misclassified"] == 0.0


# --- objects: adapted Rand error and variation of information ----------------------------------

def cells_between_membranes():
    """Class ids of an ISBI-like picture: membranes 1, four cells 0 (2x2 blocks of 10x10)."""
    classes = np.zeros((21, 21), np.int64)
    classes[10, :] = classes[:, 10] = 1
    return classes


def test_identical_objects_score_zero_errors():
    classes = cells_between_membranes()
    assert object_scores(classes, classes, "background") == {"adapted_rand_error": 0.0, "vi": 0.0, "vi_split": 0.0,
                                                             "vi_merge": 0.0}


def test_a_missing_membrane_merges_two_cells():
    """Two cells of 100 pixels predicted as one: Rand recall 1 and precision (pairs in one cell in both) /
    (pairs in one predicted cell) = (2 * 100**2 - 200) / (200**2 - 200) (pairs of pixels, each with itself
    left out, as scikit-image counts them); VI merge = 1 bit."""
    truth = np.zeros((10, 21), np.int64)
    truth[:, 10] = 1
    merged = np.zeros_like(truth)
    found = object_scores(truth, merged, "background")
    precision = (2 * 100 ** 2 - 200) / (200 ** 2 - 200)
    assert found["adapted_rand_error"] == pytest.approx(1 - 2 * precision / (precision + 1))
    assert found["vi_merge"] == pytest.approx(1.0) and found["vi_split"] == pytest.approx(0.0)


def test_a_spurious_membrane_splits_a_cell_and_foreground_objects_work_alike():
    truth = np.ones((10, 20), np.int64)
    split = truth.copy()
    split[:, 10] = 0  # a false gap: one nucleus predicted as two (of 10 and 9 columns)
    found = object_scores(truth, split, "foreground")
    assert found["vi_split"] > 0.9 and found["vi_merge"] == pytest.approx(0.0, abs=1e-9)
    assert 0.3 < found["adapted_rand_error"] < 0.4


def test_ignored_pixels_belong_to_no_object():
    truth = cells_between_membranes()
    truth[0, :] = 255
    assert object_scores(truth, truth, "background", ignore_index=255)["adapted_rand_error"] == 0.0
