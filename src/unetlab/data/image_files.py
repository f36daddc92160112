"""Image files: which suffixes are read, finding them in a folder, and decoding one into NumPy.

Pillow reads PNG, JPEG, BMP and GIF (8- and 16-bit); tifffile, when installed, reads TIFF.
No TensorFlow: the integrity check (`unetlab.data.checks`) and prediction use these readers
directly, and the tf.data pipeline calls `read_array` for TIFF files.

Hostile or broken files are refused with a reason, never half-read: an image of more than
`MAX_PIXELS` pixels (a decompression bomb, or simply too large) before its pixels are decoded,
and a file whose name is not UTF-8 (`scan_images` lists it apart; `printable` shows it).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # decoded by TensorFlow (and Pillow)
TIFF_SUFFIXES = (".tif", ".tiff")  # decoded by tifffile
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + TIFF_SUFFIXES
READ_WORKERS = min(8, os.cpu_count() or 1)  # threads that read files at once (integrity check, fingerprint)
# The most pixels (height x width) an image may have: a larger one is refused from its header, before its
# pixels are decoded. Pillow's decompression-bomb check (PIL.Image.MAX_IMAGE_PIXELS) is set to it, and
# refuses instead of warning; TIFF and TensorFlow decoding (`unetlab.data.decode`) check it themselves.
# 16384 x 16384 is 1 GiB per float32 channel; raise it (before reading) for larger images you trust.
MAX_PIXELS = 16384 * 16384


class Undecodable(Exception):
    """The reason a file's bytes are not an image we can read (without the file name)."""


def scan_images(directory: Path) -> tuple[dict[str, Path], list[tuple[Path, Path]], list[Path]]:
    """Image files of an existing folder by stem (the first of each stem), every (kept file,
    other file) pair that shares a stem, and the image files whose name is not UTF-8 (left out)."""
    files: dict[str, Path] = {}
    clashes: list[tuple[Path, Path]] = []
    badly_named: list[Path] = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in SUPPORTED_SUFFIXES or not path.is_file():
            continue
        if printable(path.name) != path.name:
            badly_named.append(path)
        elif path.stem in files:
            clashes.append((files[path.stem], path))
        else:
            files[path.stem] = path
    return files, clashes, badly_named


def printable(text: str | Path) -> str:
    """A file name or path as text that can be printed and logged: bytes of a name that are not
    UTF-8 (which Python keeps as surrogates) become \\xNN escapes, so messages can name the file."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_array(path: str | Path) -> np.ndarray:
    """A PNG/JPEG/BMP/GIF/TIFF file as an (H, W, C) array of its own dtype (C=1 for grayscale).

    16-bit PNGs give uint16, float TIFFs float32. Palette images are expanded to RGB(A),
    as TensorFlow's decoders do; GIFs give their first frame. Raises `DataError` naming the
    file when it cannot be read or decoded.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path} cannot be read ({error.strerror or error})") from None
    try:
        return decode_array(data, path.suffix)
    except Undecodable as error:
        raise DataError(f"{path} cannot be decoded ({error})") from None


def decode_array(data: bytes, suffix: str) -> np.ndarray:
    """The bytes of an image file (its `suffix` picks the decoder) as (H, W, C); raises `Undecodable`."""
    if not data:
        raise Undecodable("file is empty")
    array = _decode_tiff(data) if suffix.lower() in TIFF_SUFFIXES else _decode_pillow(data)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise Undecodable(f"unexpected pixel array of shape {array.shape}")
    return array


def _decode_pillow(data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Image.open checks the header's size against it ...
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)  # ... and refuses, not warns
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            image.load()
            mode = image.mode
            if mode == "P" or mode == "PA":
                image = image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
            elif mode == "1":
                image = image.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            array = np.asarray(image)
    except UnidentifiedImageError:
        raise Undecodable("not a PNG, JPEG, BMP or GIF image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_large() from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # truncated or corrupt data
        raise Undecodable(str(error) or type(error).__name__) from None
    if mode.startswith("I;16") or (mode == "I" and array.size and 0 <= array.min() and array.max() <= 65535):
        array = array.astype(np.uint16)  # 16-bit PNGs: native byte order, unsigned
    return array


def too_large(height: int | None = None, width: int | None = None) -> Undecodable:
    """Why an image of more than MAX_PIXELS pixels is refused (its size when known)."""
    size = f"{height}x{width} is " if height is not None else ""
    return Undecodable(f"{size}more than MAX_PIXELS={MAX_PIXELS} pixels: a decompression bomb, or too large "
                       f"to read (unetlab.data.image_files.MAX_PIXELS)")


def _decode_tiff(data: bytes) -> np.ndarray:
    try:
        import tifffile
    except ImportError:
        raise Undecodable("cannot read TIFF: install tifffile") from None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            series = tiff.series[0]
            axes, shape = series.axes, series.shape
            channel_axes = _check_tiff_shape(axes, shape)  # before any pixel is decoded
            array = series.asarray()
    except Undecodable:
        raise
    except Exception as error:  # tifffile raises many types for corrupt files
        raise Undecodable(str(error).splitlines()[0] if str(error) else type(error).__name__) from None
    order = [axes.index("Y"), axes.index("X"), *channel_axes]
    dropped = [i for i in range(array.ndim) if i not in order]
    squeezed = array.squeeze(axis=tuple(dropped)) if dropped else array
    return np.transpose(squeezed, [i - sum(d < i for d in dropped) for i in order])


def _check_tiff_shape(axes: str, shape: tuple[int, ...]) -> list[int]:
    """The channel axis (if any) of a TIFF series that holds one 2-D image of at most MAX_PIXELS pixels:
    Y, X and at most one sample/channel axis (S or C); every other axis must have length 1."""
    if "Y" not in axes or "X" not in axes:
        raise Undecodable(f"has no 2-D image (axes {axes})")
    channel_axes = [i for i, axis in enumerate(axes) if axis in "SC" and shape[i] > 1]
    stacked = [i for i, axis in enumerate(axes) if axis not in "YXSC" and shape[i] > 1]
    if stacked or len(channel_axes) > 1:
        raise Undecodable(f"holds a {'x'.join(map(str, shape))} stack (axes {axes}); expected one 2-D image")
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    if height * width > MAX_PIXELS:
        raise too_large(height, width)
    return channel_axes
