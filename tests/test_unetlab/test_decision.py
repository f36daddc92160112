"""unetlab.decision: temperature scaling that lowers the calibration error of over- and under-confident
maps, thresholds that maximise each objective exactly (against brute force), the stored record's round
trip, and the one-line errors."""

import dataclasses

import numpy as np
import pytest

from unetlab import challenge, decision
from unetlab.errors import ConfigError, DataError


def maps(temperature_of_truth: float, count: int = 4, size: int = 48, seed: int = 0, share: float = 0.3):
    """Binary images whose probabilities are calibrated after dividing their logits by `temperature_of_truth`
    (> 1: the model is over-confident): [(probabilities (H, W, 1), labels (H, W))]."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        true_logit = rng.normal(0, 2.5, (size, size))
        labels = (rng.random((size, size)) < 1 / (1 + np.exp(-(true_logit + np.log(share / (1 - share)))))).astype(int)
        logit = (true_logit + np.log(share / (1 - share))) * temperature_of_truth
        images.append(((1 / (1 + np.exp(-logit)))[..., None].astype(np.float32), labels))
    return images


@pytest.mark.parametrize("truth", [3.0, 0.4])
def test_temperature_scaling_finds_the_miscalibration_and_lowers_the_ece(truth):
    fitted, measured = decision.fit(maps(truth), objective=None)
    assert fitted.temperature[0] == pytest.approx(truth, rel=0.25)
    assert measured["ece_after"] < measured["ece_before"]
    assert fitted.ece == {"before": measured["ece_before"], "after": measured["ece_after"]}


def test_a_calibrated_model_keeps_no_temperature_that_would_not_lower_its_ece():
    images = maps(1.0, count=1, size=8)
    fitted, measured = decision.fit(images, objective=None)
    assert measured["ece_after"] <= measured["ece_before"]
    if not fitted.temperature:
        assert measured["ece_after"] == measured["ece_before"]


def test_a_softmax_gets_one_temperature_that_calibrates_and_never_moves_the_argmax():
    images = [(np.concatenate([1 - p, p], axis=-1), y) for p, y in maps(2.5)]
    fitted, measured = decision.fit(images, objective=None)
    assert len(fitted.temperature) == 1 and measured["ece_after"] < measured["ece_before"]
    rng = np.random.default_rng(1)
    three = rng.dirichlet([1, 1, 1], (32, 32)).astype(np.float32)
    for probabilities in (images[0][0], three):
        calibrated = fitted.calibrated(probabilities)
        np.testing.assert_allclose(calibrated.sum(axis=-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(calibrated.argmax(axis=-1), probabilities.argmax(axis=-1))


def brute_force(images, objective: str, threshold: float) -> float:
    """The objective at one threshold, from the masks themselves."""
    tp = fp = fn = tn = 0
    dices = []
    for p, y in images:
        predicted, truth = p[..., -1] >= threshold, y == 1
        a, b, c, d = (np.sum(predicted & truth), np.sum(predicted & ~truth), np.sum(~predicted & truth),
                      np.sum(~predicted & ~truth))
        tp, fp, fn, tn = tp + a, fp + b, fn + c, tn + d
        dices.append(2 * a / (2 * a + b + c) if 2 * a + b + c else 1.0)
    return {"dice": np.mean(dices), "f1": 2 * tp / (2 * tp + fp + fn), "youden": tp / (tp + fn) - fp / (fp + tn),
            "accuracy": (tp + tn) / (tp + fp + fn + tn)}[objective]


@pytest.mark.parametrize("objective", ["dice", "f1", "youden", "accuracy"])
def test_each_objective_scores_every_threshold_as_the_masks_do_and_the_best_is_chosen(objective):
    images = [(p, y) for p, y in maps(2.0, count=3, size=32, seed=3)]
    scores = decision.threshold_scores([(p[..., 0], y) for p, y in images], objective)
    for threshold in (0.05, 0.3, 0.5, 0.71, 0.95):
        assert scores[threshold] == pytest.approx(brute_force(images, objective, threshold), abs=1e-9)
    chosen = decision.best_threshold(scores)
    assert scores[chosen] == max(scores.values())


def test_ignored_pixels_count_for_nothing():
    (p, y), = maps(2.0, count=1)
    ignored = y.copy()
    ignored[:, :10] = -1
    kept = [(p[:, 10:, 0], y[:, 10:])]
    assert decision.threshold_scores([(p[..., 0], ignored)], "f1") == decision.threshold_scores(kept, "f1")


def test_the_rand_objective_is_the_challenges_rand_error_of_the_cells():
    (p, y), = maps(1.0, count=1, size=40, seed=5)
    scores = decision.threshold_scores([(p[..., 0], y)], "rand", objects=0)
    cells = y == 0
    for threshold in (0.25, 0.5, 0.75):  # class 1 (membrane) where p >= t: the cells where 1 - p > 1 - t
        expected = challenge.scores_of([challenge.tally(cells, 1.0 - p[..., 0], [1.0 - threshold])])["rand_error"]
        assert -scores[threshold] == pytest.approx(expected.value, abs=1e-9)


def test_the_fit_reports_the_objective_at_half_and_at_its_threshold():
    fitted, measured = decision.fit(maps(2.0), objective="accuracy")
    assert measured["accuracy_at_threshold"] >= measured["accuracy_at_0.5"]
    assert fitted.objective == "accuracy" and 0 < fitted.threshold < 1


def test_more_than_two_classes_take_the_argmax_and_get_no_threshold():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([1, 1, 1], (16, 16)).astype(np.float32)
    fitted, measured = decision.fit([(probabilities, rng.integers(0, 3, (16, 16)))], objective="dice")
    assert fitted.threshold is None and "dice_at_threshold" not in measured
    np.testing.assert_array_equal(fitted.classes(probabilities), probabilities.argmax(axis=-1))


def test_the_record_round_trips_and_a_missing_one_predicts_as_before():
    fitted = decision.Decision(temperature=(1.5,), threshold=0.42, objective="dice", ece={"before": 0.1, "after": 0.01})
    assert decision.Decision.from_record(fitted.as_dict()) == fitted
    plain = decision.Decision.from_record(None)
    p = np.array([[[0.49], [0.5], [0.9]]], np.float32)
    np.testing.assert_array_equal(plain.calibrated(p), p)
    np.testing.assert_array_equal(plain.classes(p), [[0, 1, 1]])
    np.testing.assert_array_equal(fitted.classes(p), [[1, 1, 1]])
    np.testing.assert_array_equal(dataclasses.replace(fitted, threshold=0.95).classes(p), [[0, 0, 0]])


def test_calibration_keeps_the_order_of_probabilities_and_half_stays_half():
    p = np.linspace(0.001, 0.999, 50, dtype=np.float32)[:, None]
    calibrated = decision.calibrate(p, (2.0,))
    assert np.all(np.diff(calibrated[:, 0]) > 0)
    assert decision.calibrate(np.array([[0.5]], np.float32), (3.0,))[0, 0] == pytest.approx(0.5)


def test_bad_input_is_one_line_naming_what_was_expected():
    with pytest.raises(ConfigError, match=r"decision.threshold must be a probability in \[0, 1\].*1.5"):
        decision.check_threshold(1.5, "decision.threshold")
    with pytest.raises(ConfigError, match="decision.objective must be one of dice, f1, rand, youden, accuracy"):
        decision.threshold_scores([], "iou")
    with pytest.raises(DataError, match="2 temperature.*3 channel"):
        decision.calibrate(np.zeros((2, 2, 3), np.float32), (1.0, 2.0))
    with pytest.raises(DataError, match="no"):
        decision.fit([], objective="dice")


def test_the_reliability_diagram_is_written(tmp_path):
    (p, y), = maps(3.0, count=1)
    pixels, labels = p.reshape(-1, 1), y.reshape(-1)
    before = decision.reliability(pixels, labels)
    assert before[2].sum() == labels.size
    decision.reliability_diagram(before, decision.reliability(decision.calibrate(pixels, (3.0,)), labels),
                                 tmp_path / "r.png")
    from PIL import Image

    assert Image.open(tmp_path / "r.png").size == (500, 500)
