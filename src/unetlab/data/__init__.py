"""Datasets: sources selected by name from `SOURCES`, and the tf.data pipeline they feed.

A source returns `Splits`: unbatched (image, mask) datasets for training and validation,
and the `Preprocessing` that prediction applies to an image to feed it as training did.
`make_batches` turns either dataset into the batched pipeline `fit` reads; patches, their
foreground oversampling and `ignore_index` are settings of the caller, passed to both:

    splits = make_folder_splits(images="data/img", masks="data/masks", image_size=256, channels=1,
                                num_classes=1, seed=0, patch_size=128, ignore_index=255)
    train = make_batches(splits.train, 8, shuffle=True, seed=0, patch_size=128, foreground_oversample=0.33,
                         ignore_index=255)
    val = make_batches(splits.val, 8, shuffle=False, seed=0)
    splits.preprocessing.save("model/preprocessing.json")  # what `unetlab.inference.predict_image` needs

Modules: `image_files` (suffixes, reading one file), `folder` (pairing, splits, folds),
`checks` (integrity check of two folders), `fingerprint`, `decode` (tf.data decoders,
mask conventions), `normalize`, `patches`, `augment`, `synthetic`, `pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import tensorflow as tf

from ..errors import ConfigError
from ..labels import check_ignore_index, palette_colours
from ..names import NORMALIZE, check_choice
from ..preprocessing import Preprocessing
from .augment import AugmentConfig, make_augmenter
from .checks import DataReport, check_folders, raise_if_broken
from .decode import decode_image, decode_mask
from .fingerprint import fingerprint
from .folder import find_pairs, split_folds, split_pairs
from .image_files import SUPPORTED_SUFFIXES, read_array
from .normalize import check_normalize, dataset_statistics, normalize_image
from .patches import check_foreground_oversample, check_patch_size, make_patch_sampler, make_tiles
from .pipeline import make_batches, make_folder_dataset
from .synthetic import VAL_OFFSET, make_synthetic_dataset


@dataclass
class Splits:
    """Training and validation data of a source, and what prediction must know of it.

    `train_files` / `val_files`: image file names of each side (empty for synthetic data);
    `val_pairs`: the (image path, mask path) of each validation image (folder data), at full resolution.
    `preprocessing`: what prediction must do to an image to feed it as this source's training
    data was fed: channels, num_classes, normalize (with the training mean/std when
    normalize="dataset"), `tile_size` (the model's input size) and `resize` (the image_size
    that whole images were resized to, None for patches and synthetic data); save it beside
    the model. Folder data with a patch_size: `train` holds whole full-resolution images
    (`make_batches` crops the patches), `val` holds patch_size tiles.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    num_train: int
    num_val: int
    description: str
    preprocessing: Preprocessing
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    val_pairs: list[tuple[str, str]] = field(default_factory=list)
    # Sources that plan their patch (data=nnunet): the model's input shape (spatial..., channels), and
    # train_batches(batch_size, first_step), the batched patch stream that replaces `train` + `make_batches`.
    input_shape: tuple[int, ...] | None = None
    train_batches: Callable | None = None


def make_synthetic_splits(*, image_size: int, channels: int, num_classes: int, seed: int, num_train: int,
                          num_val: int, max_shapes: int = 4, noise: float = 0.15, dims: int = 2) -> Splits:
    """Synthetic shapes (volumes with dims=3); validation images never appear in training."""
    common = dict(image_size=image_size, channels=channels, num_classes=num_classes, seed=seed,
                  max_shapes=max_shapes, noise=noise, dims=dims)
    size = "x".join([str(image_size)] * dims)
    return Splits(
        train=make_synthetic_dataset(num_train, **common),
        val=make_synthetic_dataset(num_val, first_index=VAL_OFFSET, **common),
        num_train=num_train,
        num_val=num_val,
        description=f"synthetic {'shapes' if dims == 2 else 'volumes'} {size}x{channels}, {num_classes} class(es)",
        preprocessing=Preprocessing(channels=channels, num_classes=num_classes, tile_size=image_size),
    )


def make_folder_splits(*, images: str, masks: str, image_size: int, channels: int, num_classes: int, seed: int,
                       val_images: str | None = None, val_masks: str | None = None,
                       val_fraction: float = 0.2, folds: int | None = None, fold: int = 0,
                       ignore_index: int | None = None, palette: Sequence[Sequence[int]] | None = None,
                       normalize: str = "scale", mean: Sequence[float] | float | None = None,
                       std: Sequence[float] | float | None = None, patch_size: int | None = None,
                       foreground_oversample: float = 0.33, invert_masks: bool = False) -> Splits:
    """Image/mask folders (files paired by stem) as training and validation data.

    Validation: its own folders (`val_images`/`val_masks`), else fold `fold` of a seeded
    `folds`-fold split (`split_folds`), else a seeded `val_fraction` split. Masks and
    `ignore_index`/`palette`, and `normalize` ("scale", "minmax", "zscore", "dataset"):
    see `unetlab.data.decode` and `unetlab.data.normalize`. With normalize="dataset",
    `mean`/`std` default to the statistics of the training images (`dataset_statistics`),
    returned in `Splits.preprocessing`. `invert_masks`: zero pixels of binary masks are the
    positive class (ISBI 2012 labels its membranes 0).
    `patch_size=None` resizes every image to image_size; with a patch_size, images keep
    their resolution: training samples one random patch per image and pass (through
    `make_batches`, `foreground_oversample` of them centred on foreground), validation is
    the fixed tiling of every image (`make_tiles`).
    """
    ignore_index = check_ignore_index(ignore_index, num_classes)
    if palette is not None:
        palette = [list(colour) for colour in palette_colours(palette, num_classes, ignore_index)]
    check_choice("normalize", normalize, NORMALIZE)
    if patch_size is not None:
        patch_size = check_patch_size(patch_size)
    foreground_oversample = check_foreground_oversample(foreground_oversample)
    own_val = val_images is not None and val_masks is not None
    if folds is not None and own_val:
        raise ConfigError(f"folds splits images into folds; it cannot be combined with val_images/val_masks. "
                          f"Received: folds={folds!r}, val_images={val_images!r}, val_masks={val_masks!r}")

    pairs = find_pairs(images, masks)
    if own_val:
        train, val = pairs, find_pairs(val_images, val_masks, images_key="val_images", masks_key="val_masks")
        how = f"validation from {val_images}"
    elif folds is not None:
        train, val = split_folds(pairs, folds, fold, seed)
        how = f"fold {fold} of {folds}"
    else:
        train, val = split_pairs(pairs, val_fraction, seed)
        how = f"val_fraction={val_fraction}"

    if (mean is None) != (std is None):
        raise ConfigError(f"mean and std go together: set both (normalize='dataset' with known statistics) or "
                          f"neither (computed from the training images). Received: mean={mean!r}, std={std!r}")
    if normalize == "dataset" and mean is None:
        mean, std = dataset_statistics(train, channels=channels)
    mean, std = check_normalize(normalize, channels, mean, std)

    common = dict(image_size=None if patch_size else image_size, channels=channels, num_classes=num_classes,
                  ignore_index=ignore_index, palette=palette, normalize=normalize, mean=mean, std=std,
                  invert_masks=invert_masks)
    train_data, val_data = make_folder_dataset(train, **common), make_folder_dataset(val, **common)
    if patch_size:
        val_data = make_tiles(val_data, patch_size)
        size = f"{patch_size}x{patch_size} patches (foreground_oversample={foreground_oversample}; val tiled)"
    else:
        size = f"{image_size}x{image_size}"
    return Splits(
        train=train_data,
        val=val_data,
        num_train=len(train),
        num_val=len(val),
        description=f"folder {images} ({len(train)} train / {len(val)} val pairs, {how}; {size}, "
                    f"normalize={normalize})",
        train_files=[Path(image).name for image, _ in train],
        val_files=[Path(image).name for image, _ in val],
        val_pairs=[(str(image), str(mask)) for image, mask in val],
        preprocessing=Preprocessing(channels=channels, num_classes=num_classes, normalize=normalize, mean=mean,
                                    std=std, tile_size=patch_size or image_size,
                                    resize=None if patch_size else image_size, invert_masks=invert_masks),
    )


def make_nnunet_splits(*, root: str, seed: int, multiple: Sequence[int], cache_dir: str | Path,
                       val_fraction: float = 0.2, folds: int | None = None, fold: int = 0,
                       patch_size: Sequence[int] | None = None, target_spacing: Sequence[float] | None = None,
                       normalization: Sequence[str] | None = None,
                       image_size: int = 128, max_patch_voxels: int = 64**3, foreground_oversample: float = 0.33,
                       patches_per_epoch: int = 64) -> Splits:
    """An nnU-Net v2 raw dataset at `root` (`unetlab.data.nnunet_source`): checked, split like folder data,
    planned on its training cases (patches of at most `image_size` per axis and `max_patch_voxels`, each axis
    a multiple of `multiple`, the network's size step), preprocessed once into `cache_dir`; an epoch is
    `patches_per_epoch` patches streamed from the memory-mapped cases, validation every validation case tiled."""
    from . import nnunet_source as source
    from .nnunet_raw import read_raw_dataset
    from .volume_cache import make_patch_stream, make_tile_stream

    dataset = read_raw_dataset(root)
    fingerprint = source.dataset_fingerprint(dataset)
    source.check_dataset(dataset, fingerprint, cache_dir)
    source.require_cases(dataset.cases, dataset)
    if folds is not None:
        train, val = split_folds(dataset.cases, folds, fold, seed)
        how = f"fold {fold} of {folds}"
    else:
        train, val = split_pairs(dataset.cases, val_fraction, seed)
        how = f"val_fraction={val_fraction}"
    plan = source.planned(dataset, train, Path(cache_dir), fingerprint, multiple=tuple(multiple),
                          target_spacing=target_spacing and tuple(target_spacing),
                          patch_size=patch_size and tuple(patch_size), normalization=normalization and tuple(normalization),
                          max_patch_size=image_size,
                          max_patch_voxels=max_patch_voxels)
    folder = source.preprocessed_cases(dataset, dataset.cases, plan, Path(cache_dir), fingerprint)
    train_names, val_names = [case.name for case in train], [case.name for case in val]
    channels = len(dataset.channel_names)

    def train_batches(batch_size: int, first_step: int = 0):
        return make_patch_stream(folder, train_names, plan.patch_size, batch_size, seed, foreground_oversample,
                                 first_step)

    return Splits(
        train=make_tile_stream(folder, train_names, plan.patch_size),  # every voxel, for a look at the data
        val=make_tile_stream(folder, val_names, plan.patch_size),
        num_train=patches_per_epoch,
        num_val=len(val),
        description=f"nnU-Net dataset {dataset.root.name} ({len(train)} train / {len(val)} val cases, {how}; "
                    f"{dataset.dims}D, {channels} channel(s), {dataset.num_classes} classes; "
                    f"{source.describe_plan(plan)}; cache {folder})",
        preprocessing=Preprocessing(channels=channels, num_classes=source.head_classes(dataset), normalize="zscore",
                                    tile_size=max(plan.patch_size), patch_size=list(plan.patch_size),
                                    target_spacing=list(plan.target_spacing), normalization=list(plan.normalization),
                                    ct_statistics=None if plan.ct_statistics is None else
                                    [list(values) for values in plan.ct_statistics]),
        train_files=train_names,
        val_files=val_names,
        input_shape=(*plan.patch_size, channels),
        train_batches=train_batches,
    )


SOURCES = {"synthetic": make_synthetic_splits, "folder": make_folder_splits, "nnunet": make_nnunet_splits}

__all__ = ["SOURCES", "SUPPORTED_SUFFIXES", "AugmentConfig", "DataReport", "Splits", "check_folders",
           "dataset_statistics", "decode_image", "decode_mask", "find_pairs", "fingerprint", "make_augmenter",
           "make_batches", "make_folder_dataset", "make_folder_splits", "make_nnunet_splits", "make_patch_sampler",
           "make_synthetic_dataset", "make_synthetic_splits", "make_tiles", "normalize_image", "raise_if_broken",
           "read_array", "split_folds", "split_pairs"]
