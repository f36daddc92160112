"""Evaluation scores against scikit-learn on the same predictions."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from unetlab.evaluation import confusion_matrix, scores

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
    assert result["pixel_error"] == pytest.approx((truth != prediction).mean())
    if num_classes > 1:
        per_class = jaccard_score(truth.ravel(), prediction.ravel(), labels=list(range(classes)), average=None)
        assert [result[f"iou_class{c}"] for c in range(classes)] == pytest.approx(per_class)


def test_ignored_pixels_do_not_count():
    truth = np.array([[0, 1], [255, 255]])
    prediction = np.array([[0, 1], [1, 0]])
    assert scores(confusion_matrix(truth, prediction, 1, ignore_index=255))["pixel_error"] == 0.0
