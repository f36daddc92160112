"""Pairing image and mask files by stem, and seeded train/validation and k-fold splits."""

import os
from pathlib import Path

import numpy as np
import pytest

from unetlab.data.folder import find_pairs, split_folds, split_pairs
from unetlab.errors import ConfigError, DataError
from unetlab_samples import make_folder, save


def test_find_pairs_names_unpaired_files(tmp_path):
    images, masks = make_folder(tmp_path)
    (masks / "s1.png").unlink()
    save(masks / "extra.png", np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(DataError, match=r"1 image\(s\) without mask .*: s1.png; 1 mask\(s\) without image .*extra.png"):
        find_pairs(images, masks)


def test_find_pairs_rejects_missing_and_empty_directories(tmp_path):
    with pytest.raises(DataError, match=r"^images='.*nowhere' is not a directory"):
        find_pairs(tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^images='.*empty' holds no images"):
        find_pairs(tmp_path / "empty", tmp_path)
    with pytest.raises(DataError, match=r"^data\.val_images='.*empty' holds no images"):
        find_pairs(tmp_path / "empty", tmp_path, images_key="data.val_images")  # a caller's own name


def test_find_pairs_reads_tiff_and_rejects_two_files_with_one_stem(tmp_path):
    images, masks = make_folder(tmp_path, count=2)
    (images / "s1.png").rename(images / "s1.tif")
    assert [Path(i).name for i, _ in find_pairs(images, masks)] == ["s0.png", "s1.tif"]
    save(images / "s1.png", np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(DataError, match="s1.png and s1.tif .* share the stem 's1'"):
        find_pairs(images, masks)


def test_find_pairs_rejects_file_names_that_are_not_utf8_showing_them_escaped(tmp_path):
    images, masks = make_folder(tmp_path, count=2)
    with open(os.path.join(os.fsencode(images), b"caf\xe9.png"), "wb") as file:  # latin-1, not UTF-8
        file.write((images / "s0.png").read_bytes())
    with pytest.raises(DataError, match=r"^caf\\xe9\.png in images='.*images': file name not UTF-8, rename it$"):
        find_pairs(images, masks)


def test_split_is_seeded_and_disjoint():
    pairs = [(f"i{i}", f"m{i}") for i in range(10)]
    train, val = split_pairs(pairs, 0.3, seed=1)
    assert split_pairs(pairs, 0.3, seed=1) == (train, val)
    assert len(val) == 3 and not set(train) & set(val) and set(train) | set(val) == set(pairs)
    assert split_pairs(pairs, 0.3, seed=2)[1] != val


def test_k_fold_validates_every_pair_exactly_once():
    pairs = [(f"i{i}", f"m{i}") for i in range(11)]
    folds = [split_folds(pairs, 4, fold, seed=5) for fold in range(4)]
    vals = [val for _, val in folds]
    assert sorted(pair for val in vals for pair in val) == sorted(pairs)  # each pair in exactly one fold
    assert sorted(len(val) for val in vals) == [2, 3, 3, 3]
    for train, val in folds:
        assert not set(train) & set(val) and sorted(train + val) == sorted(pairs)
    assert split_folds(pairs, 4, 1, seed=5) == folds[1]
    assert [split_folds(pairs, 4, f, seed=6)[1] for f in range(4)] != vals


@pytest.mark.parametrize("folds, fold, message", [(1, 0, r"^folds must be an integer >= 2 .*Received: folds=1$"),
                                                  (3, 3, r"^fold must be an integer in \[0, 2\] for folds=3\. "
                                                         r"Received: fold=3$"),
                                                  (20, 0, "needs at least 20 image/mask pairs")])
def test_k_fold_rejects_bad_settings(folds, fold, message):
    with pytest.raises((ConfigError, DataError), match=message):
        split_folds([(f"i{i}", f"m{i}") for i in range(5)], folds, fold, seed=0)
