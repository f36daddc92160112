"""unetlab.data.check_cache: a passed check is read back for the same files and settings, and only then."""

import json

import numpy as np
import pytest

from helpers import write_pairs, write_png
from unetlab.data import check_cache, checks

RULES = dict(channels=1, num_classes=2)


@pytest.fixture
def dataset(tmp_path):
    images, masks = write_pairs(tmp_path / "data", count=4, size=16)
    return images, masks, tmp_path / "cache"


def refuse_decoding(monkeypatch):
    def decode(*args, **kwargs):
        raise AssertionError("the dataset was decoded again")

    monkeypatch.setattr(checks, "_check_pair", decode)


def test_a_passed_check_is_read_back_without_decoding_the_files_again(dataset, monkeypatch):
    images, masks, cache = dataset
    first = check_cache.checked_folders(images, masks, cache_dir=cache, **RULES)
    assert first.ok and len(list(cache.glob("*.json"))) == 1
    refuse_decoding(monkeypatch)
    again = check_cache.checked_folders(images, masks, cache_dir=cache, **RULES, names={"images": "data.images"})
    assert again.ok and again.pairs == first.pairs and again.summary == first.summary
    assert again.names["images"] == "data.images"


def test_a_moved_copy_of_the_same_files_hits_and_names_its_own_folders(dataset, tmp_path, monkeypatch):
    images, masks, cache = dataset
    check_cache.checked_folders(images, masks, cache_dir=cache, **RULES)
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)
    refuse_decoding(monkeypatch)
    again = check_cache.checked_folders(moved / images.name, moved / masks.name, cache_dir=cache, **RULES)
    assert again.summary["images"] == str(moved / images.name)
    assert all(image.startswith(str(moved)) for image, _ in again.pairs)


def test_a_changed_byte_or_other_settings_check_again_and_broken_data_is_never_cached(dataset):
    images, masks, cache = dataset
    assert check_cache.checked_folders(images, masks, cache_dir=cache, **RULES).ok
    assert not check_cache.checked_folders(images, masks, cache_dir=cache, channels=3, num_classes=2).ok
    mask = sorted(masks.iterdir())[0]
    write_png(mask, np.full((16, 16), 7, np.uint8))  # a class id num_classes=2 does not have
    report = check_cache.checked_folders(images, masks, cache_dir=cache, **RULES)
    assert not report.ok and {problem.kind for problem in report.problems} == {"label_values"}
    assert len(list(cache.glob("*.json"))) == 1  # only the first, passed check
    assert not check_cache.checked_folders(images, masks, cache_dir=cache, **RULES).ok  # still reported


def test_an_unreadable_entry_is_checked_again(dataset):
    images, masks, cache = dataset
    check_cache.checked_folders(images, masks, cache_dir=cache, **RULES)
    [entry] = cache.glob("*.json")
    entry.write_text("{not json")
    assert check_cache.checked_folders(images, masks, cache_dir=cache, **RULES).ok
    assert json.loads(entry.read_text())["summary"]["num_pairs"] == 4  # written again, whole


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UNETLAB_CACHE_DIR", str(tmp_path / "mine"))
    assert check_cache.default_cache_dir() == tmp_path / "mine" / "data-checks"
    monkeypatch.delenv("UNETLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert check_cache.default_cache_dir() == tmp_path / "xdg" / "unetlab" / "data-checks"
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(check_cache.Path, "home", staticmethod(no_home))
    assert check_cache.default_cache_dir() is None  # no cache, rather than a crash before training


def test_a_lower_pixel_limit_checks_again(dataset, monkeypatch):
    images, masks, cache = dataset
    assert check_cache.checked_folders(images, masks, cache_dir=cache, **RULES).ok
    monkeypatch.setattr(check_cache.image_files, "MAX_PIXELS", 15 * 15)
    report = check_cache.checked_folders(images, masks, cache_dir=cache, **RULES)
    assert not report.ok and "MAX_PIXELS" in str(report.problems[0])


def test_an_entry_that_cannot_be_written_leaves_no_temporary_file(dataset, monkeypatch):
    images, masks, cache = dataset

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(check_cache.os, "replace", full_disk)
    assert check_cache.checked_folders(images, masks, cache_dir=cache, **RULES).ok
    assert list(cache.iterdir()) == []
