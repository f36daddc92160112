"""unetlab.components: each rule on hand-drawn maps (2D and 3D), the records' round trip, and the choice
that keeps a rule only where it raises the validation Dice."""

import numpy as np
import pytest

from unetlab.components import Rule, apply, choose, class_dice, from_records, as_records
from unetlab.errors import DataError


def blobs() -> np.ndarray:
    """A 20x20 binary map: a 6x6 square, a 2x2 speck, a 1-pixel speck, and a ring with a 2x2 hole."""
    classes = np.zeros((20, 20), np.int64)
    classes[1:7, 1:7] = 1
    classes[10:12, 2:4] = 1
    classes[15, 15] = 1
    classes[10:16, 8:14] = 1
    classes[12:14, 10:12] = 0  # the hole inside the ring
    return classes


def test_min_size_removes_the_components_below_n_pixels_and_gives_them_the_other_class():
    cleaned = Rule("min_size", 1, 5).apply(blobs(), 2)
    assert cleaned[10:12, 2:4].sum() == 0 and cleaned[15, 15] == 0
    assert cleaned[1:7, 1:7].all() and cleaned[10:16, 8:14].sum() == 32
    assert Rule("min_size", 1, 2).apply(blobs(), 2)[10:12, 2:4].all()  # 4 pixels stay at N=2


def test_keep_largest_keeps_one_component():
    from scipy import ndimage

    cleaned = Rule("keep_largest", 1).apply(blobs(), 2)
    assert ndimage.label(cleaned == 1)[1] == 1 and cleaned[1:7, 1:7].all()


def test_fill_holes_fills_enclosed_background_but_not_background_touching_the_border():
    classes = blobs()
    classes[0:3, 0:3] = 0  # background at the border, beside the square: not a hole
    filled = Rule("fill_holes", 1).apply(classes, 2)
    assert filled[12:14, 10:12].all() and not filled[0, 0]
    assert np.sum(filled != classes) == 4


def test_a_pocket_of_background_inside_another_class_is_not_a_hole_of_this_one():
    classes = np.zeros((12, 12), np.int64)
    classes[1:6, 1:6] = 2
    classes[3, 3] = 0  # background enclosed by class 2
    filled = Rule("fill_holes", 1).apply(classes, 3)
    np.testing.assert_array_equal(filled, classes)
    assert Rule("fill_holes", 2).apply(classes, 3)[3, 3] == 2


def test_keep_largest_of_equal_components_keeps_the_first_in_scan_order():
    classes = np.zeros((6, 9), np.int64)
    classes[0:2, 6:8] = classes[3:5, 0:2] = 1
    kept = Rule("keep_largest", 1).apply(classes, 2)
    assert kept[0:2, 6:8].all() and not kept[3:5, 0:2].any()


def test_a_binary_models_class_0_takes_rules_too_and_gives_pixels_to_class_1():
    cells = 1 - blobs()  # class 0 now the objects
    cleaned = Rule("min_size", 0, 5).apply(cells, 2)
    assert cleaned[12:14, 10:12].all()  # the 4-pixel cell inside the ring became class 1


def test_multi_class_rules_give_removed_pixels_to_the_background_and_leave_other_classes():
    classes = blobs() * 2
    classes[0, 19] = 1
    cleaned = Rule("keep_largest", 2).apply(classes, 3)
    assert cleaned[0, 19] == 1 and cleaned[15, 15] == 0 and cleaned[1:7, 1:7].all()


def test_rules_work_on_volumes_with_6_connectivity():
    volume = np.zeros((5, 6, 6), np.int64)
    volume[1:4, 1:4, 1:4] = 1
    volume[4, 5, 5] = 1  # touches the cube only diagonally
    cleaned = Rule("min_size", 1, 2).apply(volume, 2)
    assert cleaned.sum() == 27 and cleaned[4, 5, 5] == 0


def test_rules_apply_in_order_and_round_trip_as_records():
    rules = [Rule("min_size", 1, 5), Rule("fill_holes", 1)]
    assert from_records(as_records(rules)) == rules and from_records(None) == []
    expected = Rule("fill_holes", 1).apply(Rule("min_size", 1, 5).apply(blobs(), 2), 2)
    np.testing.assert_array_equal(apply(rules, blobs(), 2), expected)
    with pytest.raises(DataError, match="rule must be one of keep_largest, min_size, fill_holes"):
        Rule("erode", 1)


def test_choose_keeps_what_raises_the_validation_dice_and_nothing_else():
    truth = blobs()
    truth[10:12, 2:4] = 0
    truth[15, 15] = 0  # the specks are false positives
    truth[12:14, 10:12] = 1  # the ring's hole is a false negative
    predictions = [blobs(), blobs()]
    rules, dice = choose(predictions, [truth, truth], num_classes=2, min_sizes=(2, 5, 40))
    # class 0 first: keeping its largest component fills the ring's hole (the cell inside it); then the specks
    assert rules == [Rule("keep_largest", 0), Rule("min_size", 1, 5)]
    before, after = dice[1]
    assert after == pytest.approx(1.0) and before < after
    assert class_dice([apply(rules, p, 2) for p in predictions], [truth, truth], 1) == pytest.approx(1.0)
    assert choose([truth], [truth], 2, (5,))[0] == []  # a perfect map: no rule helps


def test_class_dice_ignores_ignored_pixels_and_counts_absent_classes_as_one():
    truth = np.array([[1, -1], [0, 0]])
    assert class_dice([np.array([[1, 1], [0, 0]])], [truth], 1) == 1.0
    assert class_dice([np.zeros((2, 2), int)], [np.zeros((2, 2), int)], 1) == 1.0
