"""Image/mask folders: pairing by file stem, seeded train/validation splits and k-fold splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .image_files import SUPPORTED_SUFFIXES, printable, scan_images


def list_images(directory: str | Path, key: str) -> dict[str, Path]:
    """Image files of `directory` by stem; `key` names the folder in errors (`key='path' is not a directory`).

    Refuses two files with one stem (masks are matched, and predicted masks named, by stem) and
    file names that are not UTF-8.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise DataError(f"{key}={str(directory)!r} is not a directory")
    files, clashes, badly_named = scan_images(folder)
    if badly_named:
        raise DataError(f"{_preview([printable(p.name) for p in badly_named])} in {key}={str(directory)!r}: "
                        f"file name not UTF-8, rename it")
    if clashes:
        kept, other = clashes[0]
        raise DataError(f"{kept.name} and {other.name} in {key}={str(directory)!r} share the stem "
                        f"{kept.stem!r}; one file per stem, as masks are matched and named by stem")
    if not files:
        raise DataError(f"{key}={str(directory)!r} holds no images ({', '.join(SUPPORTED_SUFFIXES)})")
    return files


def find_pairs(images: str | Path, masks: str | Path, *, images_key: str = "images",
               masks_key: str = "masks") -> list[tuple[str, str]]:
    """(image path, mask path) pairs matched by file stem; every file must have its partner.

    `images_key` / `masks_key` name the two folders in errors (a caller passes its own names).
    """
    image_files = list_images(images, images_key)
    mask_files = list_images(masks, masks_key)
    without_mask = sorted(set(image_files) - set(mask_files))
    without_image = sorted(set(mask_files) - set(image_files))
    if without_mask or without_image:
        problems = []
        if without_mask:
            problems.append(f"{len(without_mask)} image(s) without mask in {masks}: "
                            f"{_preview([image_files[stem].name for stem in without_mask])}")
        if without_image:
            problems.append(f"{len(without_image)} mask(s) without image in {images}: "
                            f"{_preview([mask_files[stem].name for stem in without_image])}")
        raise DataError("; ".join(problems))
    return [(str(image_files[stem]), str(mask_files[stem])) for stem in sorted(image_files)]


def split_pairs(pairs: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded random split; both sides get at least one pair."""
    if len(pairs) < 2:
        raise DataError(f"need at least 2 image/mask pairs to split off validation data, found {len(pairs)}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    num_val = min(max(1, round(val_fraction * len(pairs))), len(pairs) - 1)
    val = [pairs[i] for i in sorted(order[:num_val])]
    train = [pairs[i] for i in sorted(order[num_val:])]
    return train, val


def split_folds(pairs: list, folds: int, fold: int, seed: int) -> tuple[list, list]:
    """(train, val) of fold `fold` of a seeded `folds`-fold cross-validation.

    The pairs are shuffled with `seed` and cut into `folds` parts whose sizes differ by
    at most one; part `fold` is the validation set, the others are the training set. Over
    fold = 0..folds-1 (same seed) every pair is validated exactly once. Both lists keep the
    order of `pairs`.
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2 (or None for no cross-validation). "
                          f"Received: folds={folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < folds:
        raise ConfigError(f"fold must be an integer in [0, {folds - 1}] for folds={folds}. "
                          f"Received: fold={fold!r}")
    if len(pairs) < folds:
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} image/mask pairs, found {len(pairs)}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    val_indices = set(np.array_split(order, folds)[fold].tolist())
    train = [pair for i, pair in enumerate(pairs) if i not in val_indices]
    val = [pair for i, pair in enumerate(pairs) if i in val_indices]
    return train, val


def _preview(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
