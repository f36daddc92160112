"""Datasets: sources selected by name from `SOURCES` (the `data.name` key).

A source returns `Splits`: unbatched (image, mask) datasets for training and
validation; `make_batches` turns either into the batched pipeline `fit` reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from .folder import find_pairs, split_pairs
from .pipeline import make_batches, make_folder_dataset
from .synthetic import VAL_OFFSET, make_synthetic_dataset


@dataclass
class Splits:
    train: tf.data.Dataset
    val: tf.data.Dataset
    num_train: int
    num_val: int
    description: str


def make_synthetic_splits(*, image_size: int, channels: int, num_classes: int, seed: int, num_train: int,
                          num_val: int, max_shapes: int = 4, noise: float = 0.15) -> Splits:
    """Synthetic shapes; validation images never appear in training."""
    common = dict(image_size=image_size, channels=channels, num_classes=num_classes, seed=seed,
                  max_shapes=max_shapes, noise=noise)
    return Splits(
        train=make_synthetic_dataset(num_train, **common),
        val=make_synthetic_dataset(num_val, first_index=VAL_OFFSET, **common),
        num_train=num_train,
        num_val=num_val,
        description=f"synthetic shapes {image_size}x{image_size}x{channels}, {num_classes} class(es)",
    )


def make_folder_splits(*, images: str, masks: str, image_size: int, channels: int, num_classes: int, seed: int,
                       val_images: str | None = None, val_masks: str | None = None,
                       val_fraction: float = 0.2) -> Splits:
    """Image/mask folders; validation from its own folders or a seeded `val_fraction` split."""
    pairs = find_pairs(images, masks)
    if val_images is not None and val_masks is not None:
        train, val = pairs, find_pairs(val_images, val_masks, images_key="data.val_images",
                                       masks_key="data.val_masks")
    else:
        train, val = split_pairs(pairs, val_fraction, seed)
    common = dict(image_size=image_size, channels=channels, num_classes=num_classes)
    return Splits(
        train=make_folder_dataset(train, **common),
        val=make_folder_dataset(val, **common),
        num_train=len(train),
        num_val=len(val),
        description=f"folder {images} ({len(train)} train / {len(val)} val pairs)",
    )


SOURCES = {"synthetic": make_synthetic_splits, "folder": make_folder_splits}

__all__ = ["SOURCES", "Splits", "find_pairs", "make_batches", "make_folder_dataset", "make_folder_splits",
           "make_synthetic_dataset", "make_synthetic_splits", "split_pairs"]
