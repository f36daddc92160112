"""The decision layer: calibrated probabilities and the threshold that turns them into a mask, fitted on
validation data after training and stored with the model (`Preprocessing.decision`).

Calibration is temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): a sigmoid
output's probability p becomes sigmoid(logit(p) / T), one T per sigmoid output (per class); a softmax model's
becomes softmax(log(p) / T) with one T for all classes, as Guo et al. fit it: temperatures per softmax class
would shift the classes against each other and move the argmax, which calibration must not do. T minimises
the negative log-likelihood of the validation pixels and is kept only where it lowers their expected
calibration error (ECE); the figures it reports are those of the pixels it was fitted on (in-sample).

A binary model (one sigmoid output, or two softmax classes) labels a pixel class 1 where its calibrated
probability of class 1 is at least `threshold`; the threshold is the one of `THRESHOLDS` that scores best
on the validation images by `objective` (`OBJECTIVES`). Models of more classes take the argmax. Then the
component rules (`unetlab.components`: remove small components, keep the largest, fill holes) chosen on
the same images clean the class map.

    decision = fit(probabilities, labels, calibrate="temperature", objective="dice")
    classes = decision.classes(decision.calibrated(probabilities_of_a_new_image))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np

from .components import Rule, apply, as_records, from_records
from .errors import ConfigError, DataError
from .names import CALIBRATION, DECISION_OBJECTIVES, check_choice

EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before their logarithm (float32-safe)
THRESHOLDS = tuple(round(0.01 * step, 2) for step in range(1, 100))  # the thresholds an objective chooses from
RAND_THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(1, 20))  # `rand` labels components: a coarser grid
ECE_BINS = 15  # equal-width confidence bins of the calibration error and the reliability diagram
MAX_FIT_PIXELS = 2**20  # temperature fitting uses at most this many pixels (drawn at random, seeded)
HISTOGRAM_BINS = 1000  # the threshold counts: a histogram of the probability, exact at every THRESHOLDS value


@dataclass(frozen=True)
class Decision:
    """How a model's probabilities become its output: `temperature` (one per sigmoid output, or one for a
    softmax; empty: as predicted),
    `threshold` of class 1 for a binary model (None: 0.5, or the argmax), and what chose them."""
    temperature: tuple[float, ...] = ()
    threshold: float | None = None
    objective: str | None = None
    ece: dict = field(default_factory=dict)  # {"before": .., "after": ..} on the validation pixels it was fitted on
    rules: tuple[Rule, ...] = ()  # unetlab.components: applied in order to the class map

    def calibrated(self, probabilities: np.ndarray) -> np.ndarray:
        """Probabilities (..., K) with the temperatures applied (unchanged when there are none), float32."""
        return calibrate(probabilities, self.temperature)

    def classes(self, probabilities: np.ndarray) -> np.ndarray:
        """The mask: class ids (...) of calibrated probabilities (..., K), class 1 where its probability reaches
        the threshold (0.5 when None) for a binary model, else the argmax; then the rules."""
        return apply(self.rules, class_map(probabilities, self.threshold), max(2, probabilities.shape[-1]))

    def as_dict(self) -> dict:
        return {**asdict(self), "temperature": list(self.temperature), "rules": as_records(self.rules)}

    @classmethod
    def from_record(cls, record: dict | None) -> "Decision":
        """The decision `as_dict` stored (None: a model saved without one: probabilities as predicted, 0.5)."""
        if not record:
            return cls()
        return cls(temperature=tuple(record.get("temperature") or ()), threshold=record.get("threshold"),
                   objective=record.get("objective"), ece=dict(record.get("ece") or {}),
                   rules=tuple(from_records(record.get("rules"))))

    def describe(self) -> str:
        """In words, for the log: 'temperature 1.83, threshold 0.42 (dice)'."""
        parts = [f"temperature {', '.join(f'{t:.3g}' for t in self.temperature)}" if self.temperature
                 else "uncalibrated"]
        if self.threshold is not None:
            parts.append(f"threshold {self.threshold:g}" + (f" ({self.objective})" if self.objective else ""))
        parts.append(f"postprocessing: {self.describe_rules()}")
        return ", ".join(parts)

    def describe_rules(self) -> str:
        """The component rules in order, in words ("none" without any): 'min_size 64 (class 1); fill_holes (class 1)'."""
        return "; ".join(map(str, self.rules)) or "none"


def check_threshold(value: float | None, key: str) -> None:
    """A threshold is None or in [0, 1]; a one-line ConfigError naming `key` otherwise."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key} must be a probability in [0, 1] (or null: the model's fitted threshold). "
                          f"Received: {key}={value}")


def calibrate(probabilities: np.ndarray, temperature: Sequence[float], dtype=np.float32) -> np.ndarray:
    """`Decision.calibrated`: sigmoid(logit(p) / T) for one output, softmax(log(p) / T) for several
    (computed in `dtype`: float32 as the exported graph does; the fit's search in float64)."""
    p = np.asarray(probabilities, dtype)
    if not len(temperature):
        return p
    t = np.asarray(temperature, dtype)
    if len(t) not in (1, p.shape[-1]):
        raise DataError(f"the model's decision has {len(t)} temperature(s) but its output has {p.shape[-1]} "
                        "channel(s): the stored decision belongs to another model")
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    if p.shape[-1] == 1:
        logits = (np.log(clipped) - np.log(1 - clipped)) / t  # log(1 - p), not log1p: ONNX has no Log1p
        return (1 / (1 + np.exp(-logits))).astype(dtype)
    logits = np.log(clipped) / t
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(dtype)


def class_map(probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class ids (...) of probabilities (..., K): a binary model (K <= 2) thresholds class 1's probability
    (`threshold`, 0.5 when None), more classes take the argmax."""
    p = np.asarray(probabilities)
    cut = 0.5 if threshold is None else threshold
    if p.shape[-1] == 1:
        return (p[..., 0] >= cut).astype(np.int64)
    if p.shape[-1] == 2 and threshold is not None:
        return (p[..., 1] >= cut).astype(np.int64)
    return p.argmax(axis=-1)


# ---------------------------------------------------------------- calibration
def confidence(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel (probabilities (N, K), labels (N,)): the predicted class's probability, and whether it is right."""
    if probabilities.shape[-1] == 1:
        p = probabilities[:, 0]
        predicted = p >= 0.5
        return np.where(predicted, p, 1 - p), predicted == (labels == 1)
    return probabilities.max(axis=-1), probabilities.argmax(axis=-1) == labels


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS):
    """(mean confidence, accuracy, pixel count) per equal-width confidence bin (empty bins: NaN, 0)."""
    conf, correct = confidence(np.asarray(probabilities, np.float64), np.asarray(labels))
    index = np.minimum((conf * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, conf, bins) / counts
        accuracy = np.bincount(index, correct.astype(np.float64), bins) / counts
    return mean_confidence, accuracy, counts


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """The ECE: the pixel-weighted mean gap between confidence and accuracy over the confidence bins."""
    mean_confidence, accuracy, counts = reliability(probabilities, labels, bins)
    used = counts > 0
    return float(np.sum(counts[used] * np.abs(mean_confidence[used] - accuracy[used])) / counts.sum())


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean NLL of the labels (N,) under probabilities (N, K) (K = 1: of class 1)."""
    p = np.clip(np.asarray(probabilities, np.float64), EPSILON, 1 - EPSILON)
    if p.shape[-1] == 1:
        return float(-np.mean(np.where(labels == 1, np.log(p[:, 0]), np.log1p(-p[:, 0]))))
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, ...]:
    """The temperature of least NLL on the pixels (probabilities (N, K), labels (N,)) as a 1-tuple: of the one
    sigmoid output, or of the whole softmax (module docstring); searched on log T in [-3, 3] (T 0.05 to 20)."""
    from scipy.optimize import minimize_scalar

    def loss(log_t) -> float:
        return negative_log_likelihood(calibrate(probabilities, (float(np.exp(log_t)),), np.float64), labels)

    best = minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-3}).x
    return (float(np.exp(best)),)


# ---------------------------------------------------------------- thresholds
def threshold_scores(images: Sequence[tuple[np.ndarray, np.ndarray]], objective: str,
                     objects: int = 1) -> dict[float, float]:
    """{threshold: score (higher is better)} of `objective` over the validation images, each (probability of
    class 1 (H, W), labels (H, W) with -1 where ignored). `objects`: the class whose components `rand` counts
    (0: the cells between class-1 membranes, the ISBI 2012 challenge's)."""
    check_choice("decision.objective", objective, DECISION_OBJECTIVES)
    if objective == "rand":
        return rand_scores(images, objects)
    counts = np.array([_threshold_counts(p, labels) for p, labels in images])  # (images, thresholds, 4)
    tp, fp, fn, tn = np.moveaxis(counts, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if objective == "dice":  # the mean of the images' Dice (an image with no class 1 either side: 1)
            per_image = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
            values = per_image.mean(axis=0)
        else:
            tp, fp, fn, tn = (array.sum(axis=0) for array in (tp, fp, fn, tn))
            values = {"f1": 2 * tp / (2 * tp + fp + fn),
                      "youden": tp / (tp + fn) - fp / (fp + tn),
                      "accuracy": (tp + tn) / (tp + fp + fn + tn)}[objective]
    return {threshold: float(value) for threshold, value in zip(THRESHOLDS, np.nan_to_num(values, nan=-np.inf))}


def _threshold_counts(probability: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(tp, fp, fn, tn) of class 1 at each of `THRESHOLDS` (class 1 where probability >= threshold), exact:
    every threshold is a histogram edge."""
    valid = labels >= 0
    p, positive = np.asarray(probability, np.float64)[valid], labels[valid] == 1
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    above = [np.cumsum(np.histogram(p[side], edges)[0][::-1])[::-1] for side in (positive, ~positive)]
    at = np.round(np.array(THRESHOLDS) * HISTOGRAM_BINS).astype(int)
    tp, fp = above[0][at], above[1][at]
    return np.stack([tp, fp, positive.sum() - tp, (~positive).sum() - fp], axis=-1).astype(np.float64)


def rand_scores(images: Sequence[tuple[np.ndarray, np.ndarray]], objects: int) -> dict[float, float]:
    """{threshold: -(the ISBI 2012 challenge's Rand error)} on `RAND_THRESHOLDS`: the objects are the
    components of class `objects`, 4-connected, as `unetlab.challenge` scores them."""
    from . import challenge

    tallies = []
    for index, (probability, labels) in enumerate(images):
        truth = labels == objects
        object_probability = probability if objects == 1 else 1.0 - probability
        # the objects are where the object probability is above 1 - t (class 1 where p >= t): the grid mirrored
        grid = [1.0 - threshold for threshold in RAND_THRESHOLDS] if objects == 0 else list(RAND_THRESHOLDS)
        tallies.append(challenge.tally(truth, object_probability.astype(np.float32), sorted(grid), f"image {index}"))
    curve = dict(challenge.scores_of(tallies)["rand_error"].curve)
    return {threshold: -curve[min(curve, key=lambda g: abs(g - (1.0 - threshold if objects == 0 else threshold)))]
            for threshold in RAND_THRESHOLDS}


def best_threshold(scores: dict[float, float]) -> float:
    """The threshold of the highest score; of equal ones, the nearest to 0.5."""
    return max(scores, key=lambda threshold: (scores[threshold], -abs(threshold - 0.5)))


# ---------------------------------------------------------------- fitting
def fit(images: Sequence[tuple[np.ndarray, np.ndarray]], *, calibrate_with: str = "temperature",
        objective: str | None = "dice", objects: int = 1, min_sizes: Sequence[int] | None = None,
        seed: int = 0) -> tuple[Decision, dict]:
    """The decision of validation images, each (probabilities (H, W, K) as the model predicts them, labels
    (H, W) of class ids with -1 where ignored), and what it measured: {"ece_before", "ece_after",
    "<objective>_at_0.5", "<objective>_at_threshold"}, and with `min_sizes` (the candidate N of
    `unetlab.components`' min_size rule; None: no postprocessing) the component rules chosen and
    {"postprocess_dice_before", "postprocess_dice_after"} (the mean over the classes they were tried on).
    `objective` None, or a model of more than two classes: no threshold (0.5 / the argmax)."""
    check_choice("decision.calibrate", calibrate_with, CALIBRATION)
    if not images:
        raise DataError("the decision layer is fitted on validation images, and there are none")
    channels = images[0][0].shape[-1]
    pixels, labels = sampled_pixels(images, seed)
    ece_before = expected_calibration_error(pixels, labels)
    temperature: tuple[float, ...] = ()
    ece_after = ece_before
    if calibrate_with == "temperature":
        candidate = fit_temperature(pixels, labels)
        after = expected_calibration_error(calibrate(pixels, candidate), labels)
        if after < ece_before:  # temperature scaling minimises NLL; it is kept only where it calibrates
            temperature, ece_after = candidate, after
    measured = {"ece_before": ece_before, "ece_after": ece_after}
    threshold = None
    if objective is not None and channels <= 2:
        binary = [(calibrate(p, temperature)[..., -1], y) for p, y in images]
        scores = threshold_scores(binary, objective, objects)
        threshold = best_threshold(scores)
        middle = min(scores, key=lambda t: abs(t - 0.5))
        measured.update({f"{objective}_at_0.5": scores[middle], f"{objective}_at_threshold": scores[threshold]})
        if objective == "rand":  # reported as the error it is
            measured = {k: (-v if k.startswith("rand_") else v) for k, v in measured.items()}
    fitted = Decision(temperature, threshold, objective if threshold is not None else None,
                      {"before": ece_before, "after": ece_after})
    if min_sizes is None:
        return fitted, measured
    from . import components

    maps = [fitted.classes(fitted.calibrated(p)) for p, _ in images]
    rules, dice = components.choose(maps, [y for _, y in images], max(2, channels), min_sizes)
    measured.update({"postprocess_dice_before": float(np.mean([b for b, _ in dice.values()])),
                     "postprocess_dice_after": float(np.mean([a for _, a in dice.values()]))})
    return replace(fitted, rules=tuple(rules)), measured


def sampled_pixels(images, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The labelled pixels of all images ((N, K) probabilities, (N,) labels), at most MAX_FIT_PIXELS drawn at random."""
    probabilities = np.concatenate([p.reshape(-1, p.shape[-1]) for p, _ in images])
    labels = np.concatenate([y.reshape(-1) for _, y in images])
    keep = labels >= 0
    probabilities, labels = probabilities[keep], labels[keep]
    if len(labels) > MAX_FIT_PIXELS:
        chosen = np.random.default_rng(seed).choice(len(labels), MAX_FIT_PIXELS, replace=False)
        probabilities, labels = probabilities[chosen], labels[chosen]
    return probabilities.astype(np.float32), labels.astype(np.int64)


def reliability_diagram(before: tuple, after: tuple, path, title: str = "") -> None:
    """A reliability diagram (PNG): accuracy against confidence per bin, before and after calibration
    (`reliability`'s triples), the diagonal a perfectly calibrated model's."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    figure = Figure(figsize=(5, 5), dpi=100)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated")
    for (mean_confidence, accuracy, counts), label in ((before, "before"), (after, "after")):
        used = counts > 0
        axes.plot(mean_confidence[used], accuracy[used], marker="o", label=label)
    axes.set(xlabel="confidence (probability of the predicted class)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
             title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(str(path))
