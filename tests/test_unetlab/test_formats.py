"""Folder data in every supported file format, mask convention and normalisation."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from unetlab.data import dataset_statistics, make_folder_dataset, make_folder_splits
from unetlab.errors import ConfigError

tifffile = pytest.importorskip("tifffile")

RNG = np.random.default_rng(0)


def save(path: Path, array) -> str:
    """Write `array` with tifffile (.tif/.tiff) or Pillow (everything else), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    if path.suffix in (".tif", ".tiff"):
        if array.ndim == 3 and array.shape[-1] != 3:  # N channels, not a stack of pages
            tifffile.imwrite(path, array, photometric="minisblack", planarconfig="contig")
        else:
            tifffile.imwrite(path, array)
    else:
        Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array).save(path)
    return str(path)


def load(pairs, **params):
    """Every (image, mask) of make_folder_dataset at full resolution, as NumPy arrays."""
    params = {"image_size": None, "channels": 1, "num_classes": 1, **params}
    return [(image.numpy(), mask.numpy()) for image, mask in make_folder_dataset(pairs, **params)]


def smooth(shape, dtype, high):
    """A gradient image (compresses well, so JPEG stays close)."""
    rows, cols = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    base = (rows + cols) / 2
    if len(shape) == 3:
        base = np.stack([np.roll(base, c, axis=1) for c in range(shape[2])], axis=-1)
    return (base * high).astype(dtype)


def empty_mask(tmp_path, shape=(12, 10)):
    return save(tmp_path / "masks" / "m.png", np.zeros(shape, np.uint8))


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
    image_path = save(tmp_path / "images" / name, array)
    [(image, mask)] = load([(image_path, empty_mask(tmp_path))], channels=channels)
    expected = array.astype(np.float32).reshape(12, 10, channels) / value_range
    assert image.shape == (12, 10, channels) and image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=tolerance + 1e-6)


def test_16_bit_png_keeps_its_full_range(tmp_path):
    array = np.array([[0, 1, 256], [1000, 40000, 65535]], np.uint16)
    [(image, _)] = load([(save(tmp_path / "i.png", array), empty_mask(tmp_path, (2, 3)))])
    np.testing.assert_array_equal(image[..., 0], array / np.float32(65535))
    assert len(np.unique(image)) == 6  # 1 and 256 stay apart (8 bits would merge 0 and 1)


def test_gif_gives_its_first_frame_as_rgb(tmp_path):
    path = tmp_path / "i.gif"
    Image.fromarray(np.full((12, 10, 3), [255, 0, 0], np.uint8)).save(path)
    [(image, _)] = load([(str(path), empty_mask(tmp_path))], channels=3)
    np.testing.assert_allclose(image[0, 0], [1.0, 0.0, 0.0])


@pytest.mark.parametrize("name, array, channels", [("rgb.png", np.zeros((12, 10, 3), np.uint8), 1),
                                                   ("gray.tif", np.zeros((12, 10), np.uint16), 3)])
def test_channel_count_different_from_the_config_names_the_file(tmp_path, name, array, channels):
    pairs = [(save(tmp_path / "images" / name, array), empty_mask(tmp_path))]
    message = rf"{name} has \d channel\(s\) but data.channels={channels}"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        load(pairs, channels=channels)


def test_image_and_mask_of_different_sizes_name_both_files(tmp_path):
    pairs = [(save(tmp_path / "images" / "a.png", np.zeros((12, 10), np.uint8)), empty_mask(tmp_path, (9, 10)))]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"a.png is 12x10 but mask .*m.png is 9x10"):
        load(pairs)


# --- masks ---------------------------------------------------------------------------------------

def mask_pairs(tmp_path, mask, name="m.png"):
    mask = np.asarray(mask)
    image = save(tmp_path / "images" / "i.png", np.zeros(mask.shape[:2], np.uint8))
    return [(image, save(tmp_path / "masks" / name, mask))]


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
    [(_, decoded)] = load(mask_pairs(tmp_path, mask), num_classes=num_classes, ignore_index=ignore_index)
    np.testing.assert_array_equal(decoded[..., 0], expected)


def test_masks_in_16_bit_png_and_tiff_and_grey_rgb_hold_class_ids(tmp_path):
    ids = np.array([[0, 1], [2, 3]])
    for index, (name, mask) in enumerate([("m16.png", ids.astype(np.uint16)), ("m.tif", ids.astype(np.uint16)),
                                          ("mf.tif", ids.astype(np.float32)),
                                          ("rgb.png", np.repeat(ids[..., None], 3, -1).astype(np.uint8))]):
        [(_, decoded)] = load(mask_pairs(tmp_path / str(index), mask, name), num_classes=4)
        np.testing.assert_array_equal(decoded[..., 0], ids)


@pytest.mark.parametrize("mask, message", [
    (np.array([[0, 1, 5]], np.uint8), r"m.png has values outside the class ids 0..2 \(data.num_classes=3\), e.g. 5"),
    (np.array([[[0, 0, 0], [1, 2, 1]]], np.uint8), r"m.png has 3 channels with different values"),
])
def test_masks_that_are_not_class_ids_name_the_file(tmp_path, mask, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        load(mask_pairs(tmp_path, mask), num_classes=3)


PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]


def colour_mask(ids, palette):
    lookup = np.array(palette + [[9, 9, 9]], np.uint8)  # id -1 -> a colour not in the palette
    return lookup[np.asarray(ids)]


def test_palette_maps_colours_to_class_ids(tmp_path):
    ids = np.array([[0, 1, 2], [2, 1, 0]])
    [(_, decoded)] = load(mask_pairs(tmp_path, colour_mask(ids, PALETTE)), num_classes=3, palette=PALETTE)
    np.testing.assert_array_equal(decoded[..., 0], ids)


def test_palette_maps_unknown_colours_to_ignore_index_or_fails_naming_the_file(tmp_path):
    ids = np.array([[0, 1, -1], [2, -1, 0]])
    pairs = mask_pairs(tmp_path, colour_mask(ids, PALETTE))
    [(_, decoded)] = load(pairs, num_classes=3, palette=PALETTE, ignore_index=255)
    np.testing.assert_array_equal(decoded[..., 0], np.where(ids < 0, 255, ids))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"m.png has 2 pixel\(s\) of colours not in "
                                                             r"data.palette, e.g. \[9, 9, 9\]"):
        load(pairs, num_classes=3, palette=PALETTE)


def test_palette_colour_at_ignore_index_is_ignored(tmp_path):
    palette = PALETTE + [[255, 255, 255]]  # index 3 = ignore_index
    ids = np.array([[0, 3, 2, 1]])
    [(_, decoded)] = load(mask_pairs(tmp_path, colour_mask(ids, palette)), num_classes=3, palette=palette,
                          ignore_index=3)
    np.testing.assert_array_equal(decoded[..., 0], ids)


@pytest.mark.parametrize("params, message", [
    ({"palette": [[0, 0, 0]]}, "data.palette has 1 colours but data.num_classes=3 needs 3"),
    ({"palette": [[0, 0, 0], [1, 1, 1], [0, 0, 0]]}, "same colour"),
    ({"palette": [[0, 0, 0], [1, 1, 300], [2, 2, 2]]}, r"data.palette\[1\] must be \[r, g, b\]"),
    ({"ignore_index": 2}, "data.ignore_index must not be a class id"),
    ({"normalize": "unit"}, "data.normalize must be one of scale, minmax, zscore, dataset"),
    ({"normalize": "dataset", "mean": [0.1, 0.2], "std": [1.0]}, r"data.mean must be a number or 1 finite"),
])
def test_bad_mask_and_normalisation_settings_are_config_errors(tmp_path, params, message):
    with pytest.raises(ConfigError, match=message):
        load(mask_pairs(tmp_path, np.zeros((2, 2), np.uint8)), num_classes=3, **params)


# --- normalisation -------------------------------------------------------------------------------

def two_images(tmp_path, channels=2):
    """Two 16-bit TIFFs of different size and brightness, and their [0, 1] values."""
    first = RNG.integers(0, 30000, (6, 5, channels)).astype(np.uint16)
    second = RNG.integers(20000, 65535, (4, 7, channels)).astype(np.uint16)
    pairs = []
    for name, image in (("a", first), ("b", second)):
        pairs.append((save(tmp_path / "images" / f"{name}.tif", image),
                      save(tmp_path / "masks" / f"{name}.png", np.zeros(image.shape[:2], np.uint8))))
    return pairs, [first / np.float64(65535), second / np.float64(65535)]


def test_every_normalize_mode_matches_numpy(tmp_path):
    pairs, scaled = two_images(tmp_path)
    expected = {
        "scale": scaled,
        "minmax": [(x - x.min()) / (x.max() - x.min()) for x in scaled],
        "zscore": [(x - x.mean()) / x.std() for x in scaled],
        "dataset": [(x - [0.2, 0.3]) / np.array([0.5, 0.25]) for x in scaled],
    }
    for mode, wanted in expected.items():
        images = [image for image, _ in load(pairs, channels=2, normalize=mode, mean=[0.2, 0.3], std=[0.5, 0.25])]
        for image, reference in zip(images, wanted):
            np.testing.assert_allclose(image, reference, atol=2e-5, err_msg=mode)


def test_dataset_statistics_are_per_channel_over_all_training_pixels(tmp_path):
    pairs, scaled = two_images(tmp_path)
    pixels = np.concatenate([x.reshape(-1, 2) for x in scaled])
    mean, std = dataset_statistics(pairs, channels=2)
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-5)
    from_dataset = dataset_statistics(make_folder_dataset(pairs, image_size=None, channels=2, num_classes=1))
    np.testing.assert_allclose(from_dataset, (mean, std), rtol=1e-6)


def test_dataset_normalisation_uses_training_statistics_or_the_given_ones(tmp_path):
    pairs, scaled = two_images(tmp_path)
    images, masks = tmp_path / "images", tmp_path / "masks"
    common = dict(images=str(images), masks=str(masks), image_size=4, channels=2, num_classes=1, seed=0,
                  val_images=str(images), val_masks=str(masks), normalize="dataset")
    splits = make_folder_splits(**common)
    pixels = np.concatenate([x.reshape(-1, 2) for x in scaled])
    np.testing.assert_allclose(splits.mean, pixels.mean(0), rtol=1e-6)
    given = make_folder_splits(**common, mean=0.5, std=[0.1, 0.2])
    assert (given.mean, given.std) == ([0.5, 0.5], [0.1, 0.2])
    assert make_folder_splits(**{**common, "normalize": "scale"}).mean is None
