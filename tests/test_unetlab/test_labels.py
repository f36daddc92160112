"""Label conventions: ignore_index is a whole number that is not a class id; a palette has one colour per class."""

import numpy as np
import pytest

from unetlab.errors import ConfigError
from unetlab.labels import check_ignore_index, colour_code, palette_colours


@pytest.mark.parametrize("value, expected", [(None, None), (255, 255), (np.uint8(255), 255), (255.0, 255), (-1, -1),
                                             (3, 3)])
def test_check_ignore_index_gives_an_int(value, expected):
    result = check_ignore_index(value, num_classes=3)
    assert result == expected and (result is None or type(result) is int)


@pytest.mark.parametrize("value, num_classes, message", [
    (1, 1, r"^ignore_index must not be a class id \(0..1 for num_classes=1\)\. Received: ignore_index=1$"),
    (2, 3, r"^ignore_index must not be a class id \(0..2 for num_classes=3\)\. Received: ignore_index=2$"),
    (2.5, 3, r"^ignore_index must be an integer or None\. Received: ignore_index=2\.5$"),
    (True, 3, r"^ignore_index must be an integer or None\. Received: ignore_index=True$"),
    ("255", 3, r"^ignore_index must be an integer or None\. Received: ignore_index='255'$"),
])
def test_check_ignore_index_rejects_class_ids_and_non_integers(value, num_classes, message):
    with pytest.raises(ConfigError, match=message):
        check_ignore_index(value, num_classes)


def test_check_ignore_index_without_classes_checks_only_the_type():
    assert check_ignore_index(0, num_classes=None) == 0
    with pytest.raises(ConfigError, match="must be an integer"):
        check_ignore_index(0.5, num_classes=None)


PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]


def test_palette_colours_are_tuples_and_may_name_the_ignore_index():
    assert palette_colours(PALETTE, 3) == [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    assert palette_colours(PALETTE[:2], 1) == [(0, 0, 0), (255, 0, 0)]  # a binary model has classes 0 and 1
    assert palette_colours(PALETTE + [[9, 9, 9]], 3, ignore_index=3)[3] == (9, 9, 9)


@pytest.mark.parametrize("palette, ignore_index, message", [
    ("red", None, r"^palette must be a list of \[r, g, b\] colours\. Received: palette='red'$"),
    ([[0, 0, 0], [1, 1, 300], [2, 2, 2]], None, r"^palette\[1\] must be \[r, g, b\] with values 0..255\. "
                                                r"Received: palette\[1\]=\[1, 1, 300\]$"),
    ([[0, 0, 0], [1, 1], [2, 2, 2]], None, r"^palette\[1\] must be \[r, g, b\]"),
    (PALETTE + [[9, 9, 9]], None, r"^palette has 4 colours but num_classes=3 \(colour 3 is neither a class nor "
                                  r"ignore_index\)$"),
    (PALETTE[:1] + PALETTE[:1] + PALETTE[1:], None, r"^palette gives classes 0 and 1 the same colour \[0, 0, 0\]$"),
    (PALETTE[:2], None, r"^palette has 2 colours but num_classes=3 needs 3$"),
])
def test_bad_palettes_name_the_argument(palette, ignore_index, message):
    with pytest.raises(ConfigError, match=message):
        palette_colours(palette, 3, ignore_index)


def test_colour_code_is_one_integer_per_colour_for_scalars_and_arrays():
    assert colour_code(1, 2, 3) == 65536 + 2 * 256 + 3
    rgb = np.array([[255, 255, 255], [0, 0, 1], [1, 0, 0]], np.int64)
    np.testing.assert_array_equal(colour_code(rgb[:, 0], rgb[:, 1], rgb[:, 2]), [16777215, 1, 65536])
