"""Reading one image file into NumPy, and finding image files in a folder."""

import os

import numpy as np
import pytest
from PIL import Image

from unetlab.data import image_files
from unetlab.data.image_files import SUPPORTED_SUFFIXES, printable, read_array, scan_images
from unetlab.errors import DataError
from unetlab_samples import save


def test_read_array_gives_height_width_channels_in_the_native_dtype(tmp_path):
    grey = read_array(save(tmp_path / "g.png", np.arange(48, dtype=np.uint8).reshape(8, 6)))
    rgb = read_array(save(tmp_path / "c.bmp", np.zeros((8, 6, 3), np.uint8)))
    assert grey.shape == (8, 6, 1) and grey.dtype == np.uint8 and grey[7, 5, 0] == 47
    assert rgb.shape == (8, 6, 3)


def test_read_array_reads_16_bit_png_as_uint16(tmp_path):
    image = np.arange(0, 48 * 1000, 1000, dtype=np.uint16).reshape(8, 6)
    array = read_array(save(tmp_path / "deep.png", image))
    assert array.dtype == np.uint16 and array.shape == (8, 6, 1)
    np.testing.assert_array_equal(array[..., 0], image)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_read_array_reads_16_bit_and_float32_tiff(tmp_path, dtype):
    pytest.importorskip("tifffile")
    image = (np.arange(48).reshape(8, 6) * 1000).astype(dtype)
    grey = read_array(save(tmp_path / "grey.tif", image))
    rgb = read_array(save(tmp_path / "rgb.tif", np.stack([image] * 3, axis=-1)))
    assert grey.dtype == dtype and grey.shape == (8, 6, 1) and rgb.shape == (8, 6, 3)
    np.testing.assert_array_equal(grey[..., 0], image)


def test_read_array_raises_data_error_naming_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.png cannot be decoded \(file is empty\)"):
        read_array(tmp_path / "x.png")


def test_scan_images_keeps_supported_files_by_stem_and_lists_stem_clashes_and_names_not_utf8(tmp_path):
    for name in ("b.PNG", "a.tif", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff.png"), "wb") as file:  # latin-1 bytes in a name
        file.write(b"x")
    files, clashes, badly_named = scan_images(tmp_path)
    assert {stem: path.name for stem, path in files.items()} == {"a": "a.png", "b": "b.PNG"}
    assert [(kept.name, other.name) for kept, other in clashes] == [("a.png", "a.tif")]
    assert [printable(path.name) for path in badly_named] == ["bad\\xff.png"]
    assert ".tif" in SUPPORTED_SUFFIXES and ".txt" not in SUPPORTED_SUFFIXES


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    Image.new("1", (17000, 17000)).save(tmp_path / "bomb.png")  # 35 kB that decode to 289 megapixels
    with pytest.raises(DataError, match=r"bomb\.png cannot be decoded \(more than MAX_PIXELS=268435456 pixels: "
                                        r"a decompression bomb"):
        read_array(tmp_path / "bomb.png")


def test_images_over_max_pixels_are_refused_naming_the_file(tmp_path, monkeypatch):
    pytest.importorskip("tifffile")
    monkeypatch.setattr(image_files, "MAX_PIXELS", 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored for other tests
    assert read_array(save(tmp_path / "limit.png", np.zeros((10, 10), np.uint8))).shape == (10, 10, 1)
    for name, shape in [("warned.png", (12, 10)), ("refused.png", (30, 30)), ("big.tif", (11, 10))]:
        save(tmp_path / name, np.zeros(shape, np.uint8))  # Pillow warns above its limit, refuses above twice
        with pytest.raises(DataError, match=rf"{name} cannot be decoded \(.*more than MAX_PIXELS=100 pixels"):
            read_array(tmp_path / name)
    with pytest.raises(DataError, match=r"big\.tif cannot be decoded \(11x10 is more than MAX_PIXELS=100"):
        read_array(tmp_path / "big.tif")
