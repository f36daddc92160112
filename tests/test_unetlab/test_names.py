"""The choice lists and metric names: what the library accepts and what it reports."""

import pytest

from unetlab.errors import ConfigError
from unetlab.names import METRICS, TTA, check_choice, metric_names


def test_check_choice_returns_a_choice_and_names_the_argument_and_the_choices():
    assert check_choice("tta", "flips", TTA) == "flips"
    with pytest.raises(ConfigError, match=r"^tta must be one of none, flips, d4\. Received: tta='rot90'$"):
        check_choice("tta", "rot90", TTA)


def test_metric_names_add_per_class_scores_and_their_validation_forms():
    assert metric_names(1) == [*METRICS, *(f"val_{name}" for name in METRICS)]
    names = metric_names(3)
    assert "dice_class2" in names and "val_iou_class0" in names and len(names) == 2 * (4 + 2 * 3)
