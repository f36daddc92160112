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


def test_every_registered_loss_is_a_loss_class_that_builds_under_its_own_name():
    from unetlab import losses
    from unetlab.names import HEADS, LOSS_NAMES

    assert losses.LOSSES.keys() == LOSS_NAMES.keys()
    for name, entry in LOSS_NAMES.items():
        assert issubclass(getattr(losses, entry.cls), losses.SegmentationLoss) and entry.head in HEADS
        assert entry.help and losses.build_loss(name).name == name


def test_the_sigmoid_and_softmax_losses_split_the_registry_and_pair_up():
    from unetlab.names import LOSS_NAMES, losses_for

    sigmoid, softmax, either = losses_for("sigmoid"), losses_for("softmax"), losses_for("any")
    assert sorted(sigmoid + softmax + either) == sorted(LOSS_NAMES)
    assert sorted(name.replace("bce", "ce", 1) for name in sigmoid) == sorted(softmax)  # bce -> ce, one each
    with pytest.raises(ConfigError, match="^head must be one of sigmoid, softmax, any"):
        losses_for("tanh")


def test_the_version_is_the_installed_packages():
    from importlib import metadata

    import unetlab

    assert unetlab.__version__ == metadata.version("unetlab") != "0+unknown"
