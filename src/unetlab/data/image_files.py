"""Image files: which suffixes are read, finding them in a folder, and decoding one into NumPy.

Pillow reads PNG, JPEG, BMP and GIF (8- and 16-bit); tifffile, when installed, reads TIFF.
No TensorFlow: the integrity check (`unetlab.data.checks`) and prediction use these readers
directly, and the tf.data pipeline calls `read_array` for TIFF files.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # decoded by TensorFlow (and Pillow)
TIFF_SUFFIXES = (".tif", ".tiff")  # decoded by tifffile
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + TIFF_SUFFIXES
READ_WORKERS = min(8, os.cpu_count() or 1)  # threads that read files at once (integrity check, fingerprint)


class Undecodable(Exception):
    """The reason a file's bytes are not an image we can read (without the file name)."""


def scan_images(directory: Path) -> tuple[dict[str, Path], list[tuple[Path, Path]]]:
    """Image files of an existing folder by stem (the first of each stem), and every
    (kept file, other file) pair that shares a stem."""
    files: dict[str, Path] = {}
    clashes: list[tuple[Path, Path]] = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in SUPPORTED_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            clashes.append((files[path.stem], path))
        else:
            files[path.stem] = path
    return files, clashes


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
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # truncated or corrupt data
        raise Undecodable(str(error) or type(error).__name__) from None
    if mode.startswith("I;16") or (mode == "I" and array.size and 0 <= array.min() and array.max() <= 65535):
        array = array.astype(np.uint16)  # 16-bit PNGs: native byte order, unsigned
    return array


def _decode_tiff(data: bytes) -> np.ndarray:
    try:
        import tifffile
    except ImportError:
        raise Undecodable("cannot read TIFF: install tifffile") from None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            series = tiff.series[0]
            array, axes = series.asarray(), series.axes
    except Exception as error:  # tifffile raises many types for corrupt files
        raise Undecodable(str(error).splitlines()[0] if str(error) else type(error).__name__) from None
    # Keep Y, X and at most one sample/channel axis (S or C); every other axis must have length 1.
    if "Y" not in axes or "X" not in axes:
        raise Undecodable(f"has no 2-D image (axes {axes})")
    channel_axes = [i for i, axis in enumerate(axes) if axis in "SC" and array.shape[i] > 1]
    stacked = [i for i, axis in enumerate(axes) if axis not in "YXSC" and array.shape[i] > 1]
    if stacked or len(channel_axes) > 1:
        raise Undecodable(f"holds a {'x'.join(map(str, array.shape))} stack (axes {axes}); "
                          f"expected one 2-D image")
    order = [axes.index("Y"), axes.index("X"), *channel_axes]
    dropped = [i for i in range(array.ndim) if i not in order]
    squeezed = array.squeeze(axis=tuple(dropped)) if dropped else array
    return np.transpose(squeezed, [i - sum(d < i for d in dropped) for i in order])
