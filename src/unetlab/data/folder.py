"""Image/mask folders: pairing by file stem and a seeded train/validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def list_images(directory: str | Path, key: str) -> dict[str, Path]:
    """Image files of `directory` by stem; `key` names the config key in errors."""
    folder = Path(directory)
    if not folder.is_dir():
        raise DataError(f"{key}={str(directory)!r} is not a directory")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    if not files:
        raise DataError(f"{key}={str(directory)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
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


def _preview(stems: list[str], files: dict[str, Path], limit: int = 3) -> str:
    names = [files[s].name for s in stems[:limit]]
    return ", ".join(names) + (f" (+{len(stems) - limit} more)" if len(stems) > limit else "")
