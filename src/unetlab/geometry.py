"""Spatial size rules of the U-Net, the encoder U-Net and nnU-Net's network (pure Python, no TensorFlow import)."""

from __future__ import annotations

import math

from .errors import ConfigError
from .names import PADDING, check_choice


def unet_output_size(input_size: int, depth: int, padding: str = "same") -> int:
    """Return a U-Net's output size along one spatial axis (height, width, or a volume's depth) of `input_size`.

    With `padding="same"` (classic Keras U-Net) the output equals the input and
    `input_size` must be divisible by 2**depth. With `padding="valid"` (the
    original paper) every 3x3 convolution trims 2 pixels, so each level needs an
    even size before pooling; 572 -> 388 for depth 4.
    """
    if depth < 1:
        raise ConfigError(f"depth must be >= 1. Received: depth={depth}")
    check_choice("padding", padding, PADDING)
    if padding == "same":
        if input_size % 2**depth:
            lower = input_size // 2**depth * 2**depth
            raise ConfigError(f"image size {input_size} is not divisible by 2**depth={2**depth}; "
                              f"use {lower or 2**depth} or {lower + 2**depth}")
        return input_size
    size = input_size
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            raise ConfigError(
                f"image size {input_size} does not fit a valid-padding U-Net of depth {depth}; "
                f"nearest sizes that do: {_valid_sizes_near(input_size, depth)}"
            )
        size //= 2
    size -= 4
    for _ in range(depth):
        size = size * 2 - 4
    if size <= 0:
        raise ConfigError(f"image size {input_size} is too small for a valid-padding U-Net of depth {depth}")
    return size


def _valid_sizes_near(input_size: int, depth: int) -> list[int]:
    """The closest valid-padding input sizes below and above `input_size`."""
    below = next((s for s in range(input_size, 0, -1) if _fits_valid(s, depth)), None)
    above = next(s for s in range(input_size + 1, input_size + 2 ** (depth + 3)) if _fits_valid(s, depth))
    return [s for s in (below, above) if s is not None]


def _fits_valid(size: int, depth: int) -> bool:
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            return False
        size //= 2
    return size - 4 > 0


ENCODER_STRIDES = (2, 4, 8, 16, 32)  # an encoder U-Net's skips, one decoder stage each; inputs: multiples of 32


def check_encoder_input_size(size: int | None) -> None:
    """The heights and widths an encoder U-Net takes (`unetlab.models.encoder_unet`): multiples of 32, its
    backbones' total stride; otherwise a one-line error naming the nearest valid sizes."""
    total = ENCODER_STRIDES[-1]
    if size is not None and (size < total or size % total):
        below, above = max(total, size // total * total), max(total, -(-size // total) * total)
        nearest = str(above) if below == above else f"{below} or {above}"
        raise ConfigError(f"input size {size} does not fit an encoder U-Net (multiples of 32): the nearest valid "
                          f"sizes are {nearest}")


AXIS_NAMES = {2: ("height", "width"), 3: ("depth", "height", "width")}  # the spatial axes, by rank


def axis_words(dims: int) -> str:
    """The spatial axes of rank `dims` in words: 'height and width', 'depth, height and width'."""
    *first, last = AXIS_NAMES[dims]
    return f"{', '.join(first)} and {last}"


def stage_pairs(name: str, values, stages: int | None = None, dims: int = 2) -> list[tuple[int, ...]]:
    """Per-stage `values` (an int or a per-axis list per stage: [height, width] in 2D, [depth, height, width]
    with `dims=3`, as nnU-Net's plans list strides and kernel sizes) as tuples of `dims` ints; a one-line
    ConfigError naming `name` for anything else, or for a count other than `stages`."""
    def sizes(value) -> tuple[int, ...] | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,) * dims
        try:
            whole = len(value) == dims and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        except TypeError:
            return None
        return tuple(value) if whole else None

    result = [sizes(value) for value in values] if not isinstance(values, (str, int)) else [None]
    if not result or None in result or min(min(s) for s in result) < 1:
        shape = f"[{', '.join(AXIS_NAMES[dims])}] {'pair' if dims == 2 else 'triple'}"
        raise ConfigError(f"{name} must be a list with an int >= 1 or a {shape} per stage. "
                          f"Received: {name}={_plain(values)!r}")
    if stages is not None and len(result) != stages:
        raise ConfigError(f"{name} must have one entry per stage ({stages}, as many as strides). "
                          f"Received: {name}={_plain(values)!r}")
    return result


def _plain(values):
    """`values` as plain lists (an OmegaConf ListConfig prints as one too)."""
    try:
        return [_plain(v) for v in values] if not isinstance(values, (str, int)) else values
    except TypeError:
        return values


def check_strided_input_size(size: int | None, strides, axis: int = 0, dims: int = 2) -> None:
    """A one-line ConfigError unless `size` is a multiple of the product of `strides` along spatial `axis`
    (`AXIS_NAMES[dims][axis]`: 0 height, 1 width in 2D; 0 depth, 1 height, 2 width in 3D), naming the nearest
    sizes that are."""
    multiple = math.prod(stage[axis] for stage in stage_pairs("strides", strides, dims=dims))
    if size is not None and size % multiple:
        lower = size // multiple * multiple
        nearest = [s for s in (lower, lower + multiple) if s > 0]
        raise ConfigError(f"image size {size} is not a multiple of {multiple} (the product of the strides "
                          f"{_plain(strides)}); nearest valid sizes: {', '.join(map(str, nearest))}")
