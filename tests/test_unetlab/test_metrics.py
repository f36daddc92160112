"""Metrics against NumPy references accumulated over batches, with and without ignored pixels."""

import keras
import numpy as np
import pytest

from unetlab.metrics import OverlapScore, build_metrics
from unetlab.names import metric_names
from unetlab_samples import IGNORE, random_case, with_ignored


def np_scores(truth, prediction, num_classes):
    """Per-class Dice and IoU from pixel counts over the whole batch."""
    dice, iou = [], []
    for c in range(max(num_classes, 2)):
        t, p = truth == c, prediction == c
        tp, fp, fn = (t & p).sum(), (~t & p).sum(), (t & ~p).sum()
        dice.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
        iou.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
    return np.array(dice), np.array(iou)


@pytest.mark.parametrize("num_classes", [1, 4])
def test_metrics_match_numpy_reference_accumulated_over_batches(num_classes):
    metrics = {m.name: m for m in build_metrics(num_classes)}
    truths, predictions = [], []
    for _ in range(3):
        truth, probabilities = random_case(num_classes)
        for metric in metrics.values():
            metric.update_state(truth, probabilities)
        truths.append(truth[..., 0].astype(int))
        predictions.append((probabilities[..., 0] >= 0.5).astype(int) if num_classes == 1
                           else probabilities.argmax(-1))
    truth, prediction = np.concatenate(truths), np.concatenate(predictions)
    dice, iou = np_scores(truth, prediction, num_classes)
    expected_dice = dice[1] if num_classes == 1 else dice[1:].mean()
    expected_iou = iou[1] if num_classes == 1 else iou[1:].mean()
    assert float(metrics["dice"].result()) == pytest.approx(expected_dice, rel=1e-5)
    assert float(metrics["iou"].result()) == pytest.approx(expected_iou, rel=1e-5)
    assert float(metrics["pixel_accuracy"].result()) == pytest.approx((truth == prediction).mean(), rel=1e-5)
    if num_classes > 1:
        for c in range(num_classes):
            assert float(metrics[f"dice_class{c}"].result()) == pytest.approx(dice[c], rel=1e-5)
            assert float(metrics[f"iou_class{c}"].result()) == pytest.approx(iou[c], rel=1e-5)


def test_overlap_score_resets_and_scores_absent_class_as_one():
    metric = OverlapScore("dice", num_classes=1)
    empty = np.zeros((1, 4, 4, 1), np.float32)
    metric.update_state(empty, empty + 0.9)
    assert float(metric.result()) == 0.0
    metric.reset_state()
    metric.update_state(empty, empty)
    assert float(metric.result()) == 1.0


@pytest.mark.parametrize("num_classes", [1, 4])
def test_metrics_with_ignore_index_match_numpy_reference(num_classes):
    metrics = {m.name: m for m in build_metrics(num_classes, ignore_index=IGNORE)}
    truths, predictions, valids = [], [], []
    for _ in range(2):
        clean, probabilities = random_case(num_classes)
        truth, valid = with_ignored(clean)
        for metric in metrics.values():
            metric.update_state(truth, probabilities)
        truths.append(clean[..., 0].astype(int))
        valids.append(valid[..., 0])
        predictions.append((probabilities[..., 0] >= 0.5).astype(int) if num_classes == 1
                           else probabilities.argmax(-1))
    valid = np.concatenate(valids)
    truth, prediction = np.concatenate(truths)[valid], np.concatenate(predictions)[valid]
    dice, iou = np_scores(truth, prediction, num_classes)
    assert float(metrics["dice"].result()) == pytest.approx(dice[1] if num_classes == 1 else dice[1:].mean(), rel=1e-5)
    assert float(metrics["iou"].result()) == pytest.approx(iou[1] if num_classes == 1 else iou[1:].mean(), rel=1e-5)
    assert float(metrics["pixel_accuracy"].result()) == pytest.approx((truth == prediction).mean(), rel=1e-5)
    if num_classes > 1:
        for c in range(num_classes):
            assert float(metrics[f"dice_class{c}"].result()) == pytest.approx(dice[c], rel=1e-5)


def test_metrics_keep_ignore_index_through_serialization_and_reject_a_class_id():
    for metric in build_metrics(3, ignore_index=IGNORE):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
        assert type(restored) is type(metric) and restored.get_config() == metric.get_config()
        assert restored.get_config()["ignore_index"] == IGNORE
    with pytest.raises(ValueError, match="ignore_index must not be a class id"):
        build_metrics(3, ignore_index=2)


@pytest.mark.parametrize("num_classes", [1, 2, 4])
def test_metric_names_are_the_names_keras_reports(num_classes):
    names = ["loss"] + [metric.name for metric in build_metrics(num_classes)]
    assert names == [name for name in metric_names(num_classes) if not name.startswith("val_")]
    assert len(names) == (4 if num_classes == 1 else 4 + 2 * num_classes)


@pytest.mark.parametrize("num_classes", [1, 4])
def test_metrics_of_volumes_are_those_of_images_holding_the_same_voxels(num_classes):
    clean, probabilities = random_case(num_classes, batch=2, size=16)
    truth, _ = with_ignored(clean)
    weights = np.random.default_rng(3).uniform(0, 2, clean.shape[:3]).astype(np.float32)
    as_volumes = lambda x: x.reshape(2, 4, 8, 8, *x.shape[3:])  # noqa: E731
    as_images = lambda x: x.reshape(2, 32, 8, *x.shape[3:])  # noqa: E731
    sample_weights = [weights, weights[..., None], np.array([1.0, 0.5], np.float32)]  # per voxel (+ channel), image
    for arguments in [(clean, probabilities), *((truth, probabilities, w) for w in sample_weights)]:
        volumes, images = (build_metrics(num_classes, ignore_index=IGNORE) for _ in range(2))
        for volume, image in zip(volumes, images):
            volume.update_state(*[as_volumes(a) if a.ndim > 1 else a for a in arguments])
            image.update_state(*[as_images(a) if a.ndim > 1 else a for a in arguments])
            assert float(volume.result()) == pytest.approx(float(image.result()), rel=1e-6), volume.name
