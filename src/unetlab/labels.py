"""Label conventions shared by the data pipeline, the integrity check, the losses and the metrics.

Pure Python and NumPy (no TensorFlow): class ids are 0..max(num_classes, 2)-1 (a binary
model has classes 0 and 1); `ignore_index` marks pixels that count for nothing and must
not be a class id; a `palette` lists one [r, g, b] colour per class id.
"""

from __future__ import annotations

import numbers
from typing import Sequence

from .errors import ConfigError


def check_ignore_index(ignore_index, num_classes: int | None) -> int | None:
    """`ignore_index` as an int (None stays None), or ConfigError.

    It must be a whole number and, when `num_classes` is given, not a class id.
    """
    if ignore_index is None:
        return None
    if (isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Real)
            or not float(ignore_index).is_integer()):
        raise ConfigError(f"ignore_index must be an integer or None. Received: ignore_index={ignore_index!r}")
    ignore_index = int(ignore_index)
    if num_classes is not None and 0 <= ignore_index < max(num_classes, 2):
        raise ConfigError(f"ignore_index must not be a class id (0..{max(num_classes, 2) - 1} for "
                          f"num_classes={num_classes}). Received: ignore_index={ignore_index}")
    return ignore_index


def palette_colours(palette: Sequence[Sequence[int]], num_classes: int,
                    ignore_index: int | None = None) -> list[tuple[int, int, int]]:
    """Validate `palette` (index = class id) and return it as (r, g, b) tuples.

    Every class 0..max(num_classes, 2)-1 needs a colour; an entry past the classes is
    allowed only at index `ignore_index` (its pixels are ignored). Colours are distinct.
    """
    num_ids = max(num_classes, 2)
    if isinstance(palette, (str, bytes)) or not isinstance(palette, Sequence):
        raise ConfigError(f"palette must be a list of [r, g, b] colours. Received: palette={palette!r}")
    colours: list[tuple[int, int, int]] = []
    for index, colour in enumerate(palette):
        if (isinstance(colour, (str, bytes)) or not isinstance(colour, Sequence) or len(colour) != 3
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v <= 255
                           for v in colour)):
            raise ConfigError(f"palette[{index}] must be [r, g, b] with values 0..255. "
                              f"Received: palette[{index}]={colour!r}")
        if index >= num_ids and index != ignore_index:
            raise ConfigError(f"palette has {len(palette)} colours but num_classes={num_classes} "
                              f"(colour {index} is neither a class nor ignore_index)")
        rgb = tuple(int(v) for v in colour)
        if rgb in colours:
            raise ConfigError(f"palette gives classes {colours.index(rgb)} and {index} the same colour {list(rgb)}")
        colours.append(rgb)
    if len(colours) < num_ids:
        raise ConfigError(f"palette has {len(colours)} colours but num_classes={num_classes} needs {num_ids}")
    return colours


def colour_code(red, green, blue):
    """One integer per colour, red * 65536 + green * 256 + blue: for ints, NumPy arrays or tensors alike."""
    return red * 65536 + green * 256 + blue
