"""Decoding image and mask files inside tf.data: pixel values, images scaled to [0, 1], masks as class ids.

Images: PNG (8- and 16-bit), JPEG, BMP, GIF (first frame) with TensorFlow's decoders;
TIFF (.tif/.tiff, single page, 8/16-bit integer or float) with `tifffile` inside
`tf.numpy_function` (`unetlab.data.image_files.read_array`, the integrity check's reader).
Any channel count; a file whose channel count differs from `channels` is an error naming
the file (raised when the pipeline reads it; `unetlab.data.checks.check_folders` finds
every such file up front).

Masks become (H, W, 1) float32 class ids; pixels to ignore carry the value `ignore_index`:

- `palette` (list of [r, g, b], index = class id): RGB(A) masks, each colour mapped to its
  index; a colour not in the palette is `ignore_index` if set, else an error;
- binary (`num_classes` 1 or 2): a pixel equal to `ignore_index` stays ignored, every other
  non-zero pixel is foreground (1). So 0/1 and 0/255 masks both work, except that with
  `ignore_index=255` a 255 means "ignore": such masks must then be 0/1. `invert_masks=True` swaps
  the two classes: zero pixels are the positive class (ISBI 2012 marks membranes 0);
- `num_classes=K` > 2: class ids 0..K-1 (and `ignore_index`); another value is an error.

Masks with several channels hold the class id in every colour channel (alpha is dropped).

An image of more than `unetlab.data.image_files.MAX_PIXELS` pixels is an error naming the file:
PNG and JPEG sizes are read from the header, before decoding; other formats are checked once decoded.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ..errors import ConfigError, DataError
from ..labels import check_ignore_index, colour_code, palette_colours
from . import image_files
from .image_files import read_array

_TIFF_PATTERN = r"(?i).*\.tiff?"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"


def decode_values(path):
    """Pixel values of an image file as stored, and the range of its type.

    Returns (values (H, W, C) float32, value range float32 scalar): 255 for 8-bit files,
    65535 for 16-bit PNG/TIFF, the integer type's maximum for other integer TIFFs, 1 for
    float TIFFs.
    """
    path = tf.convert_to_tensor(path, tf.string)
    values, value_range = tf.cond(tf.strings.regex_full_match(path, _TIFF_PATTERN),
                                  lambda: _decode_tiff(path), lambda: _decode_with_tensorflow(path))
    with tf.control_dependencies([_check_size(path, tf.shape(values)[:2])]):  # BMP and GIF: once decoded
        values = tf.identity(values)
    values.set_shape([None, None, None])
    value_range.set_shape([])
    return values, value_range


def _decode_with_tensorflow(path):
    raw = tf.io.read_file(path)
    header = tf.strings.join([tf.strings.substr(raw, 0, 25), b"\0" * 25])  # short files: no out-of-range read
    is_png = tf.equal(tf.strings.substr(header, 0, 8), _PNG_SIGNATURE)
    is_png16 = is_png & tf.equal(tf.strings.substr(header, 24, 1), b"\x10")  # IHDR bit depth

    def png16():
        return tf.cast(tf.io.decode_png(raw, channels=0, dtype=tf.uint16), tf.float32), tf.constant(65535.0)

    def eight_bit():
        image = tf.io.decode_image(raw, channels=0, dtype=tf.uint8, expand_animations=False)
        return tf.cast(image, tf.float32), tf.constant(255.0)

    with tf.control_dependencies([_check_size(path, _header_size(raw, header, is_png))]):  # before decoding
        return tf.cond(is_png16, png16, eight_bit)


def _header_size(raw, header, is_png):
    """(height, width) int64 of a PNG (IHDR) or JPEG from its header; (0, 0) for other formats."""
    def png():
        halves = tf.cast(tf.io.decode_raw(tf.strings.substr(header, 16, 8), tf.uint16, little_endian=False), tf.int64)
        return tf.stack([halves[2] * 65536 + halves[3], halves[0] * 65536 + halves[1]])  # stored: width, height

    is_jpeg = tf.equal(tf.strings.substr(header, 0, 3), _JPEG_SIGNATURE)
    return tf.case([(is_png, png), (is_jpeg, lambda: tf.cast(tf.io.extract_jpeg_shape(raw)[:2], tf.int64))],
                   default=lambda: tf.zeros([2], tf.int64))


def _check_size(path, size):
    """An assertion that an image of `size` (height, width) has at most MAX_PIXELS pixels, naming the file."""
    size = tf.cast(size, tf.int64)
    height, width = size[0], size[1]
    return tf.debugging.Assert(height * width <= image_files.MAX_PIXELS, [tf.strings.join([
        "image ", path, " is ", tf.strings.as_string(height), "x", tf.strings.as_string(width),
        f", more than MAX_PIXELS={image_files.MAX_PIXELS} pixels (unetlab.data.image_files.MAX_PIXELS)"])])


def _decode_tiff(path):
    values, value_range = tf.numpy_function(_read_tiff, [path], [tf.float32, tf.float32], stateful=False)
    return values, value_range


def _read_tiff(path):
    path = np.asarray(path).item()  # bytes in a tf.data graph, a 0-d object array when called eagerly
    path = path.decode() if isinstance(path, bytes) else str(path)
    array = read_array(path)
    if array.dtype == bool:
        value_range = 1.0
    elif np.issubdtype(array.dtype, np.integer):
        value_range = float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        value_range = 1.0
    else:
        raise DataError(f"{path} has pixels of type {array.dtype}; expected integers or floats")
    return array.astype(np.float32), np.float32(value_range)


def decode_image(path, channels: int | None):
    """Decode an image file to float32 (H, W, channels): integers scaled to [0, 1], floats as stored.

    The file must have `channels` channels (None: any); otherwise reading it fails with an
    error that names the file.
    """
    values, value_range = decode_values(path)
    image = values / value_range
    if channels is not None:
        found = tf.shape(image)[-1]
        check = tf.debugging.Assert(tf.equal(found, channels), [tf.strings.join([
            "image ", path, " has ", tf.strings.as_string(found), " channel(s) but channels=",
            str(channels)])])
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        image.set_shape([None, None, channels])
    return image


def decode_mask(path, num_classes: int, *, ignore_index: int | None = None,
                palette: Sequence[Sequence[int]] | None = None, invert_masks: bool = False):
    """Decode a mask to class ids (H, W, 1) float32, ignored pixels set to `ignore_index`.

    See the module docstring for the conventions; a mask that breaks them fails with an
    error naming the file when it is read.
    """
    ignore_index = check_ignore_index(ignore_index, num_classes)
    check_invert(invert_masks, num_classes, palette)
    values, _ = decode_values(path)
    found = tf.shape(values)[-1]
    if palette is not None:
        colours = palette_colours(palette, num_classes, ignore_index)
        check = tf.debugging.Assert((found == 3) | (found == 4), [tf.strings.join([
            "mask ", path, " has ", tf.strings.as_string(found), " channel(s), but palette needs RGB masks"])])
        with tf.control_dependencies([check]):
            rgb = tf.cast(values[..., :3], tf.int32)
        code = colour_code(rgb[..., 0], rgb[..., 1], rgb[..., 2])
        codes = tf.constant([colour_code(*colour) for colour in colours], tf.int32)
        matches = tf.equal(code[..., None], codes)
        known = tf.reduce_any(matches, axis=-1)
        ids = tf.cast(tf.argmax(tf.cast(matches, tf.int32), axis=-1), tf.float32)
        if ignore_index is not None:
            return tf.where(known, ids, float(ignore_index))[..., None]
        unknown = tf.logical_not(known)
        first = _first_colour(rgb, unknown)
        check = tf.debugging.Assert(tf.reduce_all(known), [tf.strings.join([
            "mask ", path, " has ", tf.strings.as_string(tf.reduce_sum(tf.cast(unknown, tf.int32))),
            " pixel(s) of colours not in palette, e.g. ", first, " (set ignore_index to ignore them)"])])
        with tf.control_dependencies([check]):
            return tf.identity(ids)[..., None]

    colour_channels = tf.where((found == 2) | (found == 4), found - 1, found)  # alpha is dropped
    first = values[..., :1]
    same = tf.reduce_all(tf.equal(values[..., :colour_channels], first))
    check = tf.debugging.Assert(same, [tf.strings.join([
        "mask ", path, " has ", tf.strings.as_string(found), " channels with different values; a mask holds one "
        "class id per pixel (set palette for colour masks)"])])
    with tf.control_dependencies([check]):
        mask = tf.identity(first)
    ignored = tf.equal(mask, float(ignore_index)) if ignore_index is not None else tf.zeros_like(mask, tf.bool)
    if num_classes <= 2:
        return tf.where(ignored, mask, tf.cast(tf.not_equal(mask > 0, invert_masks), tf.float32))
    valid = ignored | ((mask >= 0) & (mask < num_classes) & tf.equal(mask, tf.round(mask)))
    allowed = f"0..{num_classes - 1}" + (f" and {ignore_index}" if ignore_index is not None else "")
    bad = tf.boolean_mask(mask, tf.logical_not(valid))
    check = tf.debugging.Assert(tf.reduce_all(valid), [tf.strings.join([
        "mask ", path, " has values outside the class ids ", allowed, f" (num_classes={num_classes}), e.g. ",
        tf.strings.as_string(tf.concat([bad, [0.0]], 0)[0], shortest=True)])])
    with tf.control_dependencies([check]):
        return tf.identity(mask)


def read_class_ids(path, num_classes: int, *, ignore_index: int | None = None,
                   palette: Sequence[Sequence[int]] | None = None, invert_masks: bool = False) -> np.ndarray:
    """A mask file as class ids (H, W) int64, decoded exactly as `decode_mask` decodes it for training; a
    mask that breaks the conventions is a one-line DataError naming the file."""
    try:
        mask = decode_mask(str(path), num_classes, ignore_index=ignore_index, palette=palette,
                           invert_masks=invert_masks)
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error))
        raise DataError(f"{path}: {' '.join(message.split())[:300]}") from None
    return mask.numpy()[..., 0].astype(np.int64)


def check_invert(invert, num_classes: int, palette=None) -> bool:
    """`invert` as a bool, or ConfigError: it swaps the classes of binary masks only."""
    if not isinstance(invert, bool):
        raise ConfigError(f"invert_masks must be true or false. Received: invert_masks={invert!r}")
    if invert and (num_classes > 2 or palette is not None):
        raise ConfigError(f"invert_masks swaps the two classes of binary masks; it cannot be used with "
                          f"num_classes={num_classes}" + (" and a palette" if palette is not None else ""))
    return invert


def _first_colour(rgb, unknown):
    """"[r, g, b]" of the first pixel where `unknown` is true ("[0, 0, 0]" if none), for messages."""
    flat = tf.reshape(rgb, [-1, 3])
    index = tf.argmax(tf.cast(tf.reshape(unknown, [-1]), tf.int32), output_type=tf.int32)
    colour = tf.strings.as_string(flat[index])
    return tf.strings.join(["[", tf.strings.reduce_join(colour, separator=", "), "]"])

