"""Image/mask folders: pairing by file stem, seeded train/validation splits and k-fold splits,
and the checks of the mask conventions (`ignore_index`, `palette`) that need no TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # decoded by TensorFlow
TIFF_SUFFIXES = (".tif", ".tiff")  # decoded by tifffile
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + TIFF_SUFFIXES


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


def list_images(directory: str | Path, key: str) -> dict[str, Path]:
    """Image files of `directory` by stem; `key` names the config key in errors."""
    folder = Path(directory)
    if not folder.is_dir():
        raise DataError(f"{key}={str(directory)!r} is not a directory")
    files, clashes = scan_images(folder)
    if clashes:
        kept, other = clashes[0]
        raise DataError(f"{kept.name} and {other.name} in {key}={str(directory)!r} share the stem "
                        f"{kept.stem!r}; pairing needs one file per stem")
    if not files:
        raise DataError(f"{key}={str(directory)!r} holds no images ({', '.join(SUPPORTED_SUFFIXES)})")
    return files


def find_pairs(images: str | Path, masks: str | Path, *, images_key: str = "data.images",
               masks_key: str = "data.masks") -> list[tuple[str, str]]:
    """(image path, mask path) pairs matched by file stem; every file must have its partner."""
    image_files = list_images(images, images_key)
    mask_files = list_images(masks, masks_key)
    without_mask = sorted(set(image_files) - set(mask_files))
    without_image = sorted(set(mask_files) - set(image_files))
    if without_mask or without_image:
        problems = []
        if without_mask:
            problems.append(f"{len(without_mask)} image(s) without mask in {masks}: {_preview(without_mask, image_files)}")
        if without_image:
            problems.append(f"{len(without_image)} mask(s) without image in {images}: {_preview(without_image, mask_files)}")
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
        raise ConfigError(f"data.folds must be an integer >= 2 (or null for no cross-validation). "
                          f"Received: folds={folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < folds:
        raise ConfigError(f"data.fold must be an integer in [0, {folds - 1}] for data.folds={folds}. "
                          f"Received: fold={fold!r}")
    if len(pairs) < folds:
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} image/mask pairs, found {len(pairs)}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    val_indices = set(np.array_split(order, folds)[fold].tolist())
    train = [pair for i, pair in enumerate(pairs) if i not in val_indices]
    val = [pair for i, pair in enumerate(pairs) if i in val_indices]
    return train, val


def check_ignore_index(ignore_index: int | None, num_classes: int) -> int | None:
    """`ignore_index` as an int, or ConfigError when it is not an integer or is a class id."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise ConfigError(f"data.ignore_index must be an integer or null. Received: ignore_index={ignore_index!r}")
    if 0 <= ignore_index < max(num_classes, 2):
        raise ConfigError(f"data.ignore_index must not be a class id (0..{max(num_classes, 2) - 1} for "
                          f"data.num_classes={num_classes}). Received: ignore_index={ignore_index}")
    return int(ignore_index)


def palette_colours(palette: Sequence[Sequence[int]], num_classes: int,
                    ignore_index: int | None = None) -> list[tuple[int, int, int]]:
    """Validate `palette` (index = class id) and return it as (r, g, b) tuples.

    Every class 0..max(num_classes, 2)-1 needs a colour; an entry past the classes is
    allowed only at index `ignore_index` (its pixels are ignored). Colours are distinct.
    """
    num_ids = max(num_classes, 2)
    if isinstance(palette, (str, bytes)) or not isinstance(palette, Sequence):
        raise ConfigError(f"data.palette must be a list of [r, g, b] colours. Received: palette={palette!r}")
    colours: list[tuple[int, int, int]] = []
    for index, colour in enumerate(palette):
        if (isinstance(colour, (str, bytes)) or not isinstance(colour, Sequence) or len(colour) != 3
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
                           for v in colour)):
            raise ConfigError(f"data.palette[{index}] must be [r, g, b] with values 0..255. Received: {colour!r}")
        if index >= num_ids and index != ignore_index:
            raise ConfigError(f"data.palette has {len(palette)} colours but data.num_classes={num_classes} "
                              f"(colour {index} is neither a class nor data.ignore_index)")
        rgb = tuple(int(v) for v in colour)
        if rgb in colours:
            raise ConfigError(f"data.palette gives classes {colours.index(rgb)} and {index} the same colour "
                              f"{list(rgb)}")
        colours.append(rgb)
    if len(colours) < num_ids:
        raise ConfigError(f"data.palette has {len(colours)} colours but data.num_classes={num_classes} needs "
                          f"{num_ids}")
    return colours


def _preview(stems: list[str], files: dict[str, Path], limit: int = 3) -> str:
    names = [files[s].name for s in stems[:limit]]
    return ", ".join(names) + (f" (+{len(stems) - limit} more)" if len(stems) > limit else "")
