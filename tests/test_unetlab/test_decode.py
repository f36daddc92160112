"""Decoding every supported file format to [0, 1] images, and masks of every convention to class ids."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from unetlab.data import image_files
from unetlab.data.decode import decode_image, decode_mask, decode_values
from unetlab.errors import ConfigError
from unetlab_samples import save

pytest.importorskip("tifffile")


def image_values(path, channels=1):
    return decode_image(str(path), channels).numpy()


def mask_values(path, num_classes=1, **params):
    return decode_mask(str(path), num_classes, **params).numpy()


def smooth(shape, dtype, high):
    """A gradient image (compresses well, so JPEG stays close)."""
    rows, cols = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    base = (rows + cols) / 2
    if len(shape) == 3:
        base = np.stack([np.roll(base, c, axis=1) for c in range(shape[2])], axis=-1)
    return (base * high).astype(dtype)


FORMATS = [  # (file name, array, channels, expected [0, 1] values, tolerance)
    ("png8.png", smooth((12, 10), np.uint8, 255), 1, 255, 0),
    ("png16.png", smooth((12, 10), np.uint16, 65535), 1, 65535, 0),
    ("jpeg.jpg", smooth((12, 10), np.uint8, 255), 1, 255, 4 / 255),
    ("bmp.bmp", smooth((12, 10), np.uint8, 255), 1, 255, 0),
    ("bmp_rgb.bmp", smooth((12, 10, 3), np.uint8, 255), 3, 255, 0),
    ("png_rgba.png", smooth((12, 10, 4), np.uint8, 255), 4, 255, 0),
    ("tiff8.tif", smooth((12, 10), np.uint8, 255), 1, 255, 0),
    ("tiff16.tiff", smooth((12, 10), np.uint16, 65535), 1, 65535, 0),
    ("tiff_float.tif", smooth((12, 10), np.float32, 3.5), 1, 1, 0),  # floats are used as stored
    ("tiff_rgb.tif", smooth((12, 10, 3), np.uint8, 255), 3, 255, 0),
    ("tiff_4ch.tif", smooth((12, 10, 4), np.uint16, 65535), 4, 65535, 0),
    ("tiff_5ch_float.tif", smooth((12, 10, 5), np.float32, 1), 5, 1, 0),
]


@pytest.mark.parametrize("name, array, channels, value_range, tolerance", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_decodes_to_its_values_over_the_type_range(tmp_path, name, array, channels, value_range,
                                                                 tolerance):
    image = image_values(save(tmp_path / "images" / name, array), channels)
    expected = array.astype(np.float32).reshape(12, 10, channels) / value_range
    assert image.shape == (12, 10, channels) and image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=tolerance + 1e-6)


def test_16_bit_png_keeps_its_full_range(tmp_path):
    array = np.array([[0, 1, 256], [1000, 40000, 65535]], np.uint16)
    image = image_values(save(tmp_path / "i.png", array))
    np.testing.assert_array_equal(image[..., 0], array / np.float32(65535))
    assert len(np.unique(image)) == 6  # 1 and 256 stay apart (8 bits would merge 0 and 1)


def test_gif_gives_its_first_frame_as_rgb(tmp_path):
    path = tmp_path / "i.gif"
    Image.fromarray(np.full((12, 10, 3), [255, 0, 0], np.uint8)).save(path)
    np.testing.assert_allclose(image_values(path, channels=3)[0, 0], [1.0, 0.0, 0.0])


@pytest.mark.parametrize("name, array, channels", [("rgb.png", np.zeros((12, 10, 3), np.uint8), 1),
                                                   ("gray.tif", np.zeros((12, 10), np.uint16), 3)])
def test_channel_count_different_from_the_argument_names_the_file(tmp_path, name, array, channels):
    path = save(tmp_path / "images" / name, array)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{name} has \d channel\(s\) but channels={channels}"):
        image_values(path, channels)


def test_a_decompression_bomb_fails_from_its_header_naming_the_file(tmp_path):
    Image.new("1", (17000, 17000)).save(tmp_path / "bomb.png")  # 35 kB that decode to 289 megapixels
    (tmp_path / "bomb.png").write_bytes((tmp_path / "bomb.png").read_bytes()[:64])  # decoding would fail otherwise
    in_graph = tf.data.Dataset.from_tensors(str(tmp_path / "bomb.png")).map(decode_values)  # as the pipeline reads
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"bomb.png is 17000x17000, more than MAX_PIXELS="):
        next(iter(in_graph))


@pytest.mark.parametrize("name", ["header.png", "header.jpg", "decoded.bmp", "decoded.gif"])
def test_images_over_max_pixels_fail_naming_the_file(tmp_path, monkeypatch, name):
    monkeypatch.setattr(image_files, "MAX_PIXELS", 100)
    path = save(tmp_path / name, np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{name} is 12x10, more than MAX_PIXELS=100 pixels"):
        image_values(path, channels=3)
    fits = save(tmp_path / f"fits_{name}", np.zeros((10, 10, 3), np.uint8))
    assert image_values(fits, channels=3).shape == (10, 10, 3)


# --- masks ---------------------------------------------------------------------------------------

def mask_file(tmp_path: Path, mask, name="m.png") -> str:
    return save(tmp_path / "masks" / name, np.asarray(mask))


LABELS = np.array([[0, 1, 1, 0], [0, 255, 255, 1]], np.uint8)


@pytest.mark.parametrize("mask, num_classes, ignore_index, expected", [
    (LABELS % 255, 1, None, LABELS % 255),  # 0/1
    (LABELS // 255 * 255, 1, None, LABELS // 255),  # 0/255: 255 is foreground
    (LABELS, 2, None, (LABELS > 0).astype(np.uint8)),  # anything > 0 is foreground without ignore_index
    (LABELS, 1, 255, LABELS),  # 0/1 with 255 = ignore: 255 stays 255, never foreground
    (np.where(LABELS == 255, 254, LABELS * 255), 1, 254, np.where(LABELS == 255, 254, LABELS)),  # 0/255, ignore 254
    (np.array([[0, 1, 2, 3]], np.uint8), 4, None, np.array([[0, 1, 2, 3]])),  # class ids
    (np.array([[0, 1, 2, 255]], np.uint8), 3, 255, np.array([[0, 1, 2, 255]])),  # class ids and ignore
], ids=["0/1", "0/255", "binary>0", "binary+ignore255", "0/255+ignore254", "class_ids", "class_ids+ignore"])
def test_mask_conventions(tmp_path, mask, num_classes, ignore_index, expected):
    decoded = mask_values(mask_file(tmp_path, mask), num_classes, ignore_index=ignore_index)
    assert decoded.shape == (*np.shape(mask), 1)
    np.testing.assert_array_equal(decoded[..., 0], expected)


@pytest.mark.parametrize("num_classes", [1, 2])
def test_inverted_binary_masks_make_zero_the_positive_class_and_keep_ignored_pixels(tmp_path, num_classes):
    mask = np.array([[0, 255, 255, 0], [0, 7, 7, 255]], np.uint8)  # ISBI 2012: membranes 0, cells 255
    decoded = mask_values(mask_file(tmp_path, mask), num_classes, ignore_index=7, invert_masks=True)
    np.testing.assert_array_equal(decoded[..., 0], [[1, 0, 0, 1], [1, 7, 7, 0]])


@pytest.mark.parametrize("params, message", [
    (dict(num_classes=3), "^invert_masks swaps the two classes of binary masks; it cannot be used with num_classes=3$"),
    (dict(num_classes=2, palette=[[0, 0, 0], [9, 9, 9]]), "num_classes=2 and a palette$"),
    (dict(num_classes=1, invert_masks="yes"), r"^invert_masks must be true or false. Received: invert_masks='yes'$"),
])
def test_invert_masks_is_for_binary_masks_only(tmp_path, params, message):
    with pytest.raises(ConfigError, match=message):
        decode_mask(mask_file(tmp_path, np.zeros((2, 2), np.uint8)), **{"invert_masks": True, **params})


def test_masks_in_16_bit_png_and_tiff_and_grey_rgb_hold_class_ids(tmp_path):
    ids = np.array([[0, 1], [2, 3]])
    for index, (name, mask) in enumerate([("m16.png", ids.astype(np.uint16)), ("m.tif", ids.astype(np.uint16)),
                                          ("mf.tif", ids.astype(np.float32)),
                                          ("rgb.png", np.repeat(ids[..., None], 3, -1).astype(np.uint8))]):
        decoded = mask_values(mask_file(tmp_path / str(index), mask, name), num_classes=4)
        np.testing.assert_array_equal(decoded[..., 0], ids)


@pytest.mark.parametrize("mask, message", [
    (np.array([[0, 1, 5]], np.uint8), r"m.png has values outside the class ids 0..2 \(num_classes=3\), e.g. 5"),
    (np.array([[[0, 0, 0], [1, 2, 1]]], np.uint8), r"m.png has 3 channels with different values"),
])
def test_masks_that_are_not_class_ids_name_the_file(tmp_path, mask, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        mask_values(mask_file(tmp_path, mask), num_classes=3)


PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]


def colour_mask(ids, palette):
    lookup = np.array(palette + [[9, 9, 9]], np.uint8)  # id -1 -> a colour not in the palette
    return lookup[np.asarray(ids)]


def test_palette_maps_colours_to_class_ids(tmp_path):
    ids = np.array([[0, 1, 2], [2, 1, 0]])
    decoded = mask_values(mask_file(tmp_path, colour_mask(ids, PALETTE)), num_classes=3, palette=PALETTE)
    np.testing.assert_array_equal(decoded[..., 0], ids)


def test_palette_maps_unknown_colours_to_ignore_index_or_fails_naming_the_file(tmp_path):
    ids = np.array([[0, 1, -1], [2, -1, 0]])
    path = mask_file(tmp_path, colour_mask(ids, PALETTE))
    decoded = mask_values(path, num_classes=3, palette=PALETTE, ignore_index=255)
    np.testing.assert_array_equal(decoded[..., 0], np.where(ids < 0, 255, ids))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"m.png has 2 pixel\(s\) of colours not in "
                                                             r"palette, e.g. \[9, 9, 9\]"):
        mask_values(path, num_classes=3, palette=PALETTE)


def test_palette_colour_at_ignore_index_is_ignored(tmp_path):
    palette = PALETTE + [[255, 255, 255]]  # index 3 = ignore_index
    ids = np.array([[0, 3, 2, 1]])
    decoded = mask_values(mask_file(tmp_path, colour_mask(ids, palette)), num_classes=3, palette=palette,
                          ignore_index=3)
    np.testing.assert_array_equal(decoded[..., 0], ids)
