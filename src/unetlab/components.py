"""Postprocessing of class maps by connected components, as named, stored rules: remove a class's
components smaller than N pixels (voxels), keep only its largest component, fill its holes.

A rule works on one class c of a class map; the pixels it takes from c get the `other` class (0, the
background; for a binary model, whose class 0 can be the objects too, the other class). c's holes are the
`other` pixels of the regions that c encloses (not connected to the map's border except through c): a
background pocket inside another class is not c's. Components are 4-connected in 2D (6-connected in 3D),
as the ISBI 2012 challenge counts them; of equally large components, keep-largest keeps the first in scan
order.

`choose` follows nnU-Net's postprocessing search (Isensee et al. 2021, Nature Methods 18:203): on the
validation images, each rule is tried per class, in the order keep-largest, remove-small (every candidate
N), fill-holes, and kept only where it raises that class's mean Dice over the images.

    rules = choose(class_maps, truths, num_classes=2, min_sizes=(16, 64, 256))
    cleaned = apply(rules, class_map, num_classes=2)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .errors import DataError

RULES = ("keep_largest", "min_size", "fill_holes")  # in the order `choose` tries them
IMPROVEMENT = 1e-4  # the mean Dice a rule must add on the validation images to be kept


@dataclass(frozen=True)
class Rule:
    """One postprocessing step: `rule` (one of `RULES`) on class `label`; `size`: min_size's N."""
    rule: str
    label: int
    size: int = 0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise DataError(f"postprocessing rule must be one of {', '.join(RULES)}. Received: rule={self.rule!r}")

    def apply(self, classes: np.ndarray, num_classes: int) -> np.ndarray:
        """`classes` (class ids, any spatial rank) with this rule applied (a new array)."""
        from scipy import ndimage

        out = np.array(classes, copy=True)
        other = other_class(self.label, num_classes)
        if self.rule == "fill_holes":
            holes = ndimage.binary_fill_holes(out == self.label) & (out == other)
            out[holes] = self.label
            return out
        components, count = ndimage.label(out == self.label)
        if count == 0:
            return out
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        if self.rule == "keep_largest":
            drop = (components > 0) & (components != sizes.argmax())
        else:
            drop = (components > 0) & (sizes[components] < self.size)
        out[drop] = other
        return out

    def __str__(self) -> str:
        return f"{self.rule}{f' {self.size}' if self.rule == 'min_size' else ''} (class {self.label})"


def other_class(label: int, num_classes: int) -> int:
    """The class a rule gives the pixels it takes from `label`: the other class of a binary model, else 0."""
    return 1 - label if num_classes <= 2 else 0


def rule_classes(num_classes: int) -> list[int]:
    """The classes rules are tried on: both of a binary model (either can be the objects), else the foreground."""
    return [0, 1] if num_classes <= 2 else list(range(1, num_classes))


def apply(rules: Sequence[Rule], classes: np.ndarray, num_classes: int) -> np.ndarray:
    """`classes` with every rule applied, in order."""
    for rule in rules:
        classes = rule.apply(classes, num_classes)
    return classes


def as_records(rules: Sequence[Rule]) -> list[dict]:
    return [asdict(rule) for rule in rules]


def from_records(records: Sequence[dict] | None) -> list[Rule]:
    """The rules `as_records` stored (None: none)."""
    return [Rule(**record) for record in records or ()]


def class_dice(classes: Sequence[np.ndarray], truths: Sequence[np.ndarray], label: int) -> float:
    """The mean over images of the Dice of class `label` (1 where neither has it); -1 in truth is ignored."""
    values = []
    for predicted, truth in zip(classes, truths):
        valid = truth >= 0
        p, t = (predicted == label) & valid, (truth == label) & valid
        total = p.sum() + t.sum()
        values.append(1.0 if total == 0 else 2.0 * np.sum(p & t) / total)
    return float(np.mean(values))


def choose(classes: Sequence[np.ndarray], truths: Sequence[np.ndarray], num_classes: int,
           min_sizes: Sequence[int], labels: Sequence[int] | None = None
           ) -> tuple[list[Rule], dict[int, tuple[float, float]]]:
    """The rules that raise each class's mean validation Dice (module docstring), and {class: (Dice before,
    Dice after)}; `classes` are the predicted class maps, `truths` the labels (-1: ignored); `labels`: the
    classes tried (default `rule_classes`)."""
    chosen: list[Rule] = []
    current = list(classes)
    dice: dict[int, tuple[float, float]] = {}
    for label in rule_classes(num_classes) if labels is None else labels:
        before = best = class_dice(current, truths, label)
        trials = [[Rule("keep_largest", label)], [Rule("min_size", label, int(n)) for n in sorted(min_sizes)],
                  [Rule("fill_holes", label)]]
        for options in trials:
            scored = [(class_dice(mapped, truths, label), rule, mapped) for rule in options
                      for mapped in [[rule.apply(c, num_classes) for c in current]]]
            value, rule, mapped = max(scored, key=lambda item: item[0])
            if value > best + IMPROVEMENT:
                best, current = value, mapped
                chosen.append(rule)
        dice[label] = (before, best)
    return chosen, dice
