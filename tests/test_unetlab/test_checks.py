"""The integrity check of an image folder against its mask folder: every problem listed, one line each."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetlab.data.checks import DataReport, Problem, check_folders, raise_if_broken
from unetlab.data.image_files import read_array
from unetlab.errors import ConfigError, DataError
from unetlab_samples import make_dataset, save, three_class_mask


def check(root, **kwargs):
    params = dict(channels=1, num_classes=3)
    return check_folders(root / "images", root / "masks", **{**params, **kwargs})


def only_problem(report, kind):
    assert [p.kind for p in report.problems] == [kind], report.format_report()
    return report.problems[0]


def test_clean_folders_pass_with_pair_count_sizes_channels_and_class_frequencies(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask(), "b": three_class_mask(), "c": three_class_mask((4, 4))})
    report = check(tmp_path)
    assert report.ok and report.problems == []
    assert [(Path(i).name, Path(m).name) for i, m in report.pairs] == [("a.png", "a.png"), ("b.png", "b.png"),
                                                                       ("c.png", "c.png")]
    assert report.summary["num_pairs"] == 3
    assert report.summary["image_sizes"] == {"8x6": 2, "4x4": 1}
    assert report.summary["channels"] == {1: 3}
    assert report.summary["image_dtypes"] == {"uint8": 3}
    assert report.summary["class_frequencies"] == pytest.approx({0: 0.5, 1: 0.25, 2: 0.25})
    text = report.format_report()
    assert "8x6 (2)" in text and "no problems found" in text


def test_image_without_mask_is_a_missing_mask(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    save(tmp_path / "images" / "lonely.png", np.zeros((8, 6), np.uint8))
    problem = only_problem(check(tmp_path), "missing_mask")
    assert problem.message == "images/lonely.png has no mask (no file named lonely.* in masks/)"
    assert problem.path.endswith("lonely.png")


def test_mask_without_image_is_a_missing_image(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    save(tmp_path / "masks" / "orphan.png", np.zeros((8, 6), np.uint8))
    problem = only_problem(check(tmp_path), "missing_image")
    assert problem.message == "masks/orphan.png has no image (no file named orphan.* in images/)"


def test_folder_without_images_is_an_empty_folder(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    for path in (tmp_path / "masks").iterdir():
        path.unlink()
    (tmp_path / "masks" / "notes.txt").write_text("not an image")
    report = check(tmp_path, names={"masks": "val_masks"})
    problem = only_problem(report, "empty_folder")
    assert problem.message.startswith("val_masks=") and "holds no images" in problem.message
    assert report.pairs == []


def test_messages_name_the_settings_as_the_caller_calls_them(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    save(tmp_path / "masks" / "a.png", np.full((8, 6), 7, np.uint8))
    save(tmp_path / "images" / "a.png", np.zeros((8, 6, 3), np.uint8))
    names = {"images": "data.images", "masks": "data.masks", "channels": "data.channels",
             "num_classes": "data.num_classes"}
    report = check(tmp_path, names=names)
    messages = " | ".join(problem.message for problem in report.problems)
    assert "data.channels=1" in messages and "(data.num_classes=3)" in messages, messages
    assert report.format_report().startswith(f"data.images={tmp_path / 'images'}")
    plain = " | ".join(problem.message for problem in check(tmp_path).problems)
    assert "channels=1" in plain and "data." not in plain  # the library's own names by default


def test_nonexistent_folder_is_a_missing_folder(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    report = check_folders(tmp_path / "images", tmp_path / "nowhere", channels=1, num_classes=3)
    problem = only_problem(report, "missing_folder")
    assert problem.message == f"masks={str(tmp_path / 'nowhere')!r} is not a directory"


def test_corrupt_and_non_image_files_are_undecodable(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask(), "b": three_class_mask()})
    truncated = tmp_path / "images" / "a.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    (tmp_path / "masks" / "b.png").write_text("hello")
    report = check(tmp_path)
    assert [p.kind for p in report.problems] == ["undecodable", "undecodable"]
    first, second = (p.message for p in report.problems)
    assert first.startswith("images/a.png cannot be decoded (") and first.endswith(")")
    assert second == "masks/b.png cannot be decoded (not a PNG, JPEG, BMP or GIF image)"


def test_image_and_mask_of_different_sizes_are_a_size_mismatch(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask((4, 4))}, images={"a": np.zeros((8, 6), np.uint8)})
    problem = only_problem(check(tmp_path), "size_mismatch")
    assert problem.message == "images/a.png is 8x6 but masks/a.png is 4x4"


def test_rgb_image_when_channels_is_1_is_a_channel_mismatch(tmp_path):
    make_dataset(tmp_path, {"c": three_class_mask()}, images={"c": np.zeros((8, 6, 3), np.uint8)})
    problem = only_problem(check(tmp_path), "channel_mismatch")
    assert problem.message == "images/c.png has 3 channels, channels=1"


def test_mask_values_outside_the_classes_are_label_values(tmp_path):
    mask = three_class_mask()
    mask[0, :2] = [3, 7]
    make_dataset(tmp_path, {"a": three_class_mask(), "b": mask})
    report = check(tmp_path)
    problem = only_problem(report, "label_values")
    assert problem.message == "masks/b.png has values [3, 7] outside the classes 0..2 (num_classes=3) in 2 pixels"
    assert str(problem) == "label_values: " + problem.message
    assert report.summary["class_frequencies"] == pytest.approx({0: 0.5, 1: 0.25, 2: 0.25})


def test_coloured_mask_without_palette_is_a_channel_mismatch(tmp_path):
    mask = np.zeros((8, 6, 3), np.uint8)
    mask[..., 0] = 1
    make_dataset(tmp_path, {"a": mask})
    problem = only_problem(check(tmp_path), "channel_mismatch")
    assert "masks/a.png has 3 channels with different values" in problem.message and "set palette" in problem.message


def test_nan_pixels_in_a_float_tiff_image_are_non_finite(tmp_path):
    pytest.importorskip("tifffile")
    image = np.random.default_rng(0).random((8, 6)).astype(np.float32)
    image.flat[:12] = [np.nan] * 6 + [np.inf] * 3 + [-np.inf] * 3
    make_dataset(tmp_path, {"d": three_class_mask()}, images={"d": image}, suffix=".tif")
    problem = only_problem(check(tmp_path), "non_finite")
    assert problem.message == "images/d.tif has 12 NaN/Inf pixels"


def test_every_problem_is_listed_not_only_the_first(tmp_path):
    bad_mask = three_class_mask((4, 4))
    bad_mask[0, 0] = 9
    make_dataset(tmp_path, {"a": bad_mask, "b": three_class_mask()}, images={"a": np.zeros((8, 6, 3), np.uint8)})
    save(tmp_path / "images" / "c.png", np.zeros((8, 6), np.uint8))
    report = check(tmp_path)
    assert not report.ok
    assert sorted(p.kind for p in report.problems) == ["channel_mismatch", "label_values", "missing_mask",
                                                       "size_mismatch"]
    text = report.format_report()
    assert "4 problems" in text and all(str(p) in text for p in report.problems)


@pytest.mark.parametrize("num_classes", [1, 2])
@pytest.mark.parametrize("foreground", [1, 255])
def test_binary_masks_with_0_1_or_0_255_pass(tmp_path, num_classes, foreground):
    mask = np.zeros((8, 6), np.uint8)
    mask[:2] = foreground
    make_dataset(tmp_path, {"a": mask})
    report = check(tmp_path, num_classes=num_classes)
    assert report.ok, report.format_report()
    assert report.summary["class_frequencies"] == pytest.approx({0: 0.75, 1: 0.25})


def test_binary_mask_mixing_0_1_and_0_255_is_label_values(tmp_path):
    make_dataset(tmp_path, {"a": np.array([[0, 1, 255, 0]], np.uint8)})
    problem = only_problem(check(tmp_path, num_classes=1), "label_values")
    assert "mixes 0/1 and 0/255" in problem.message and "[0, 1, 255]" in problem.message


def test_ignore_index_255_passes_for_three_classes_and_is_left_out_of_frequencies(tmp_path):
    mask = three_class_mask()
    mask[:2] = 255  # a quarter of the pixels, taken from class 0
    make_dataset(tmp_path, {"a": mask})
    assert "255" in only_problem(check(tmp_path), "label_values").message
    report = check(tmp_path, ignore_index=255)
    assert report.ok
    assert report.summary["class_frequencies"] == pytest.approx({0: 1 / 3, 1: 1 / 3, 2: 1 / 3})
    assert report.summary["ignored_fraction"] == pytest.approx(0.25)


PALETTE = [[0, 0, 0], [255, 0, 0], [0, 0, 255]]


def palette_mask(class_ids):
    return np.asarray(PALETTE, np.uint8)[class_ids]


def test_palette_masks_pass_with_class_frequencies_by_palette_index(tmp_path):
    make_dataset(tmp_path, {"a": palette_mask(three_class_mask())})
    report = check(tmp_path, palette=PALETTE)
    assert report.ok, report.format_report()
    assert report.summary["class_frequencies"] == pytest.approx({0: 0.5, 1: 0.25, 2: 0.25})


def test_palette_mask_with_a_stray_colour_is_label_values(tmp_path):
    mask = palette_mask(three_class_mask())
    mask[0, 0] = [12, 34, 56]
    mask[0, 1] = [255, 255, 255]
    make_dataset(tmp_path, {"a": palette_mask(three_class_mask()), "b": mask})
    problem = only_problem(check(tmp_path, palette=PALETTE), "label_values")
    assert problem.path.endswith("b.png")
    assert problem.message.startswith("masks/b.png has 2 colours not in palette")
    assert "[12, 34, 56]" in problem.message and "[255, 255, 255]" in problem.message


def test_palette_mask_stray_colours_count_as_ignored_when_ignore_index_is_set(tmp_path):
    mask = palette_mask(three_class_mask())
    mask[0, :2] = [12, 34, 56]
    make_dataset(tmp_path, {"a": mask})
    report = check(tmp_path, palette=PALETTE, ignore_index=255)
    assert report.ok, report.format_report()
    assert report.summary["ignored_fraction"] > 0


def test_palette_that_does_not_fit_num_classes_is_a_config_error(tmp_path):
    make_dataset(tmp_path, {"a": palette_mask(three_class_mask())})
    with pytest.raises(ConfigError, match="^palette has 2 colours but num_classes=3"):
        check(tmp_path, palette=PALETTE[:2])


def test_two_files_with_the_same_stem_are_a_duplicate_stem(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    save(tmp_path / "images" / "a.jpg", np.zeros((8, 6), np.uint8))
    problem = only_problem(check(tmp_path), "duplicate_stem")
    assert "images/a.jpg" in problem.message and "'a'" in problem.message


def test_file_names_that_are_not_utf8_are_file_name_problems_shown_escaped(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    for folder in ("images", "masks"):
        source = (tmp_path / folder / "a.png").read_bytes()
        with open(os.path.join(os.fsencode(tmp_path / folder), b"bad\xff.png"), "wb") as file:
            file.write(source)
    report = check(tmp_path)
    assert [(p.kind, p.message) for p in report.problems] == [
        ("file_name", "images/bad\\xff.png: file name not UTF-8, rename it"),
        ("file_name", "masks/bad\\xff.png: file name not UTF-8, rename it")]
    assert report.pairs == [(str(tmp_path / "images" / "a.png"), str(tmp_path / "masks" / "a.png"))]
    report.format_report().encode("utf-8")  # printable and loggable as it is
    assert report.summary["fingerprint"]


def test_a_decompression_bomb_is_undecodable(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    Image.new("1", (17000, 17000)).save(tmp_path / "images" / "a.png")  # 35 kB that decode to 289 megapixels
    problem = only_problem(check(tmp_path), "undecodable")
    assert problem.message.startswith("images/a.png cannot be decoded (more than MAX_PIXELS=268435456 pixels")


def test_16_bit_png_images_pass_the_check(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()}, images={"a": np.full((8, 6), 40000, np.uint16)})
    report = check(tmp_path)
    assert report.ok and report.summary["image_dtypes"] == {"uint16": 1}


def test_float32_tiff_images_pass_the_check(tmp_path):
    pytest.importorskip("tifffile")
    image = np.random.default_rng(0).random((8, 6)).astype(np.float32)
    make_dataset(tmp_path, {"a": three_class_mask()}, images={"a": image}, suffix=".tif")
    report = check(tmp_path)
    assert report.ok, report.format_report()
    assert report.summary["image_dtypes"] == {"float32": 1}


def test_tiff_stack_is_undecodable(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    make_dataset(tmp_path, {"a": three_class_mask()}, images={"a": np.zeros((8, 6), np.float32)}, suffix=".tif")
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.zeros((5, 8, 6), np.float32))
    problem = only_problem(check(tmp_path), "undecodable")
    assert "expected one 2-D image" in problem.message


def test_tiff_without_tifffile_is_undecodable_with_install_hint(tmp_path, monkeypatch):
    make_dataset(tmp_path, {"a": three_class_mask()})
    (tmp_path / "images" / "a.png").rename(tmp_path / "images" / "a.tif")
    monkeypatch.setitem(sys.modules, "tifffile", None)  # `import tifffile` now raises ImportError
    problem = only_problem(check(tmp_path), "undecodable")
    assert problem.message == "images/a.tif cannot be decoded (cannot read TIFF: install tifffile)"
    with pytest.raises(DataError, match="install tifffile"):
        read_array(tmp_path / "images" / "a.tif")


def test_raise_if_broken_names_the_count_the_first_problems_and_the_full_report():
    problems = [Problem("size_mismatch", "a", "images/a.png is 8x8 but masks/a.png is 4x4"),
                Problem("label_values", "b", "masks/b.png has values [3] outside the classes 0..2"),
                Problem("missing_mask", "c", "images/c.png has no mask"),
                Problem("non_finite", "d", "images/d.tif has 1 NaN/Inf pixel")]
    report = DataReport(pairs=[], problems=problems, summary={})
    with pytest.raises(DataError) as raised:
        raise_if_broken(report)
    message = str(raised.value)
    assert message == ("4 problems in images/masks: size_mismatch: images/a.png is 8x8 but masks/a.png "
                       "is 4x4; label_values: masks/b.png has values [3] outside the classes 0..2; missing_mask: "
                       "images/c.png has no mask; (+1 more) - DataReport.format_report() lists them all")
    assert "\n" not in message


def test_raise_if_broken_returns_a_clean_report(tmp_path):
    make_dataset(tmp_path, {"a": three_class_mask()})
    report = check(tmp_path)
    assert raise_if_broken(report) is report


@pytest.mark.parametrize("arguments, message", [
    (dict(channels=0), "^channels must be at least 1. Received: channels=0$"),
    (dict(num_classes=0), "^num_classes must be at least 1. Received: num_classes=0$"),
    (dict(ignore_index=1), r"^ignore_index must not be a class id \(0..2 for num_classes=3\)\. "
                           r"Received: ignore_index=1$"),
])
def test_impossible_arguments_are_config_errors_naming_the_argument(tmp_path, arguments, message):
    make_dataset(tmp_path, {"a": three_class_mask()})
    with pytest.raises(ConfigError, match=message):
        check(tmp_path, **arguments)
