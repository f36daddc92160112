"""Preprocessed volumes on disk, and the patches that training streams from them (2-D or 3-D alike).

Preprocessing runs once, not every epoch: `preprocess_case` normalises each channel ("zscore": per image;
"ct": clipped to the dataset's foreground 0.5/99.5 percentiles, then the foreground mean and std, see
`foreground_statistics`), resamples to the target spacing (`unetlab.data.resample`) and samples the
locations of every foreground class once (at most `LOCATIONS_PER_CLASS`, seeded), as nnU-Net v2 does.
`write_cached_case` stores NAME.npy (image, channels last, float32), NAME_seg.npy (labels, uint8) and
NAME.json (the caller's properties and the class locations), each atomically; `build_cache` does this
for every case of a dataset into `cache_folder(root, fingerprint, settings)`, skipping cases written
before, and writes the `.complete` marker last. A folder without it is never read.

Training streams patches from memory-mapped cases (`np.load(mmap_mode="r")`), reading only each
patch's window, so a dataset larger than RAM trains: `make_patch_stream` draws batch `step` from a
generator seeded by (seed, step) alone, so a run resumed at step n draws what an uninterrupted run
draws there. The last round(batch_size * foreground_oversample) patches of each batch (at least one)
are centred on a voxel of a randomly chosen foreground class. `make_tile_stream` cuts each case into
the fixed tiles of `unetlab.data.patches.tile_starts` for validation. Cases smaller than a patch are
centred in it and padded with zeros (image) and 0 (label), as nnU-Net pads.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from ..errors import ConfigError, DataError
from ..names import VOLUME_NORMALIZATION
from .patches import check_foreground_oversample, tile_starts
from .resample import resample_image, resample_labels

CACHE_VERSION = "unetlab-volume-cache-v1"  # raise when what a cached case holds changes
COMPLETE = ".complete"
LOCATIONS_PER_CLASS = 10_000  # nnU-Net v2's num_samples
_CT_KEYS = ("mean", "std", "p005", "p995")
_EPSILON = 1e-8


def normalize_channels(image: np.ndarray, normalization: Sequence[str],
                       ct_statistics: Sequence | None = None) -> np.ndarray:
    """`image` (spatial..., C) normalised channel by channel as `normalization[c]` says, float32.

    "zscore": (x - mean) / std over the image. "zscore_nonzero": the same over the voxels where any channel is
    non-zero, and 0 elsewhere (nnU-Net's z-score with `use_mask_for_norm`, for cases in an empty background).
    "ct": clipped to [p005, p995], then (x - mean) / std, with `ct_statistics[c]` = (mean, std, p005, p995) (or a
    mapping with those keys) of the dataset's foreground.
    """
    if len(normalization) != image.shape[-1]:
        raise ConfigError(f"normalization must name one scheme per channel ({image.shape[-1]}). "
                          f"Received: normalization={list(normalization)!r}")
    result = np.empty(image.shape, np.float32)
    nonzero = np.any(image != 0, axis=-1) if "zscore_nonzero" in normalization else None
    for channel, scheme in enumerate(normalization):
        values = image[..., channel].astype(np.float64)
        inside = None
        if scheme == "ct":
            mean, std, low, high = _ct_values(ct_statistics, channel)
            values = np.clip(values, low, high)
        elif scheme == "zscore" or (scheme == "zscore_nonzero" and not nonzero.any()):
            mean, std = values.mean(), values.std()
        elif scheme == "zscore_nonzero":
            inside = values[nonzero]
            mean, std = inside.mean(), inside.std()
        else:
            raise ConfigError(f"normalization[{channel}] must be one of {VOLUME_NORMALIZATION}. Received: {scheme!r}")
        result[..., channel] = (values - mean) / max(std, _EPSILON)
        if inside is not None:
            result[..., channel][~nonzero] = 0.0
    return result


def _ct_values(ct_statistics, channel: int) -> tuple[float, float, float, float]:
    given = ct_statistics[channel] if ct_statistics is not None and channel < len(ct_statistics) else None
    if isinstance(given, Mapping):
        given = [given.get(key) for key in _CT_KEYS]
    try:
        values = tuple(float(value) for value in given)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not np.isfinite(values).all():
        raise ConfigError(f"ct_statistics[{channel}] must be the foreground (mean, std, p005, p995) of a "
                          f"'ct' channel (see foreground_statistics). Received: ct_statistics={ct_statistics!r}")
    return values


def foreground_statistics(cases: Iterable[tuple[np.ndarray, np.ndarray]], *, samples_per_case: int = 10_000,
                          seed: int = 0) -> list[dict[str, float]]:
    """Per channel, {mean, std, p005, p995} of the intensities of foreground voxels (label > 0): what a
    "ct" channel is normalised with. `cases`: (image (spatial..., C), label (spatial...)) pairs at their
    original spacing; `samples_per_case` voxels are drawn (with replacement, seeded) from each, as nnU-Net."""
    samples = []
    for index, (image, label) in enumerate(cases):
        voxels = image[np.asarray(label) > 0]  # (foreground voxels, C)
        if len(voxels):
            rng = np.random.default_rng([seed, index])
            samples.append(voxels[rng.integers(0, len(voxels), samples_per_case)].astype(np.float64))
    if not samples:
        raise DataError("foreground_statistics needs at least one case with foreground (label > 0)")
    samples = np.concatenate(samples)
    return [{"mean": float(column.mean()), "std": float(column.std()), "p005": float(np.percentile(column, 0.5)),
             "p995": float(np.percentile(column, 99.5))} for column in samples.T]


def class_locations(label: np.ndarray, *, per_class: int = LOCATIONS_PER_CLASS, seed: int = 1234,
                    ignore_index: int | None = None) -> dict[int, np.ndarray]:
    """{class: (n, rank) int32 voxel coordinates}: every foreground class's voxels (> 0, not
    `ignore_index`), at most `per_class` of them drawn without replacement (seeded), in scan order."""
    rng = np.random.default_rng(seed)
    locations = {}
    for value in np.unique(label):
        if value == 0 or value == ignore_index:
            continue
        voxels = np.argwhere(label == value)
        if len(voxels) > per_class:
            voxels = voxels[np.sort(rng.choice(len(voxels), per_class, replace=False))]
        locations[int(value)] = voxels.astype(np.int32)
    return locations


def preprocess_case(image: np.ndarray, label: np.ndarray | None, spacing: Sequence[float], *,
                    target_spacing: Sequence[float] | None, normalization: Sequence[str],
                    ct_statistics: Sequence | None = None, locations_per_class: int = LOCATIONS_PER_CLASS,
                    seed: int = 1234, ignore_index: int | None = None):
    """One case, normalised (`normalize_channels`), then resampled to `target_spacing` (None: kept).

    `image`: (spatial..., C); `label`: (spatial...) class ids in 0..255, or None; `spacing`: per spatial
    axis. Returns (image float32 (spatial'..., C), label uint8 (spatial'...) or None, `class_locations`).
    """
    if image.ndim != len(spacing) + 1:
        raise DataError(f"image must be (spatial..., channels) with one spacing per spatial axis: "
                        f"image.shape={image.shape}, spacing={tuple(spacing)}")
    if label is not None and label.shape != image.shape[:-1]:
        raise DataError(f"label shape {label.shape} differs from the image's spatial shape {image.shape[:-1]}")
    image = normalize_channels(image, normalization, ct_statistics)
    target_spacing = spacing if target_spacing is None else target_spacing
    image = resample_image(image, spacing, target_spacing)
    if label is None:
        return image, None, {}
    if label.size and (label.min() < 0 or label.max() > 255 or not np.array_equal(label, np.round(label))):
        raise DataError(f"label values must be class ids in 0..255; found {np.unique(label)[:8].tolist()}")
    label = resample_labels(label.astype(np.uint8), spacing, target_spacing)
    return image, label, class_locations(label, per_class=locations_per_class, seed=seed, ignore_index=ignore_index)


def cache_folder(root_cache_dir: str | Path, fingerprint: str, settings: dict) -> Path:
    """The folder of one dataset preprocessed one way: named by the sha256 of CACHE_VERSION, the dataset's
    `fingerprint` and the preprocessing `settings` (JSON values), so a changed setting gives a new folder."""
    text = json.dumps([CACHE_VERSION, fingerprint, settings], sort_keys=True, default=_plain)
    return Path(root_cache_dir) / f"preprocessed-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def is_complete(folder: str | Path) -> bool:
    """Whether every case of `folder` was written (its `.complete` marker exists)."""
    return (Path(folder) / COMPLETE).is_file()


def mark_complete(folder: str | Path, settings: dict | None = None) -> None:
    """Write the `.complete` marker (holding `settings`, for the reader's eyes): call it after the last case."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    _write_atomically(Path(folder) / COMPLETE, lambda handle: handle.write(
        json.dumps({"version": CACHE_VERSION, "settings": settings}, default=_plain).encode()))


def write_cached_case(folder: str | Path, name: str, image: np.ndarray, label: np.ndarray | None,
                      locations: Mapping[int, np.ndarray], properties: Mapping) -> None:
    """NAME.npy (image float32, channels last), NAME_seg.npy (label uint8; none when None) and NAME.json
    (`properties`, e.g. original shape and spacing, plus "shape" and "class_locations" as lists), each
    written to a temporary file and renamed; the JSON last, so it marks a whole case."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / f"{name}.npy", lambda handle: np.save(handle, image.astype(np.float32, copy=False)))
    if label is not None:
        _write_atomically(folder / f"{name}_seg.npy", lambda handle: np.save(handle, label.astype(np.uint8)))
    stored = {**properties, "shape": list(image.shape[:-1]),
              "class_locations": {str(value): np.asarray(voxels).tolist() for value, voxels in locations.items()}}
    text = json.dumps(stored, default=_plain)
    _write_atomically(folder / f"{name}.json", lambda handle: handle.write(text.encode()))


def read_cached_case(folder: str | Path, name: str, mmap: bool = True):
    """(image, label or None, properties) of a case of a complete cache folder; the arrays memory-mapped
    read-only (`np.memmap`) unless `mmap=False`; properties["class_locations"]: {class: (n, rank) int32}."""
    folder = _complete(folder)
    try:
        properties = json.loads((folder / f"{name}.json").read_text())
        image, label = _open_arrays(folder, name, "r" if mmap else None)
    except (OSError, ValueError) as error:
        raise DataError(f"cached case {name} in {folder} cannot be read ({error})") from None
    properties["class_locations"] = _locations(properties, image.ndim - 1)
    return image, label, properties


def cached_names(folder: str | Path) -> list[str]:
    """The names of the cases written to `folder`, sorted."""
    return sorted(path.name[:-len(".json")] for path in Path(folder).glob("*.json"))


def build_cache(folder: str | Path, cases: Iterable[tuple[str, Callable[[], tuple]]], *,
                settings: dict | None = None, **preprocess) -> Path:
    """Preprocess every case into `folder` unless it is complete; returns `folder`.

    `cases`: (name, load) pairs, `load()` -> (image (spatial..., C), label or None, spacing), called only
    for cases not written yet (an interrupted build resumes); `preprocess`: `preprocess_case`'s keywords.
    Each case's properties: original_shape, original_spacing and spacing (the cached one).
    """
    folder = Path(folder)
    if is_complete(folder):
        return folder
    for name, load in cases:
        if (folder / f"{name}.json").is_file():
            continue
        image, label, spacing = load()
        cached, cached_label, locations = preprocess_case(image, label, spacing, **preprocess)
        target = preprocess.get("target_spacing") or spacing
        write_cached_case(folder, name, cached, cached_label, locations, {
            "original_shape": list(image.shape[:-1]), "original_spacing": [float(value) for value in spacing],
            "spacing": [float(value) for value in target]})
    mark_complete(folder, settings)
    return folder


def sample_patch(image, label, locations: Mapping[int, np.ndarray], patch_size: Sequence[int],
                 rng: np.random.Generator, force_foreground: bool):
    """One patch (image float32 (patch..., C), label (patch...) or None) of a (memory-mapped) case.

    Random over the case, or, when `force_foreground` and `locations` has a class, centred on a random
    voxel of a random class (clipped so the window stays inside). Only the window is read. A case smaller
    than the patch along an axis is centred and padded with 0 there.
    """
    patch = np.asarray(patch_size, dtype=np.int64)
    shape = np.asarray(image.shape[:len(patch)], dtype=np.int64)
    missing = np.maximum(patch - shape, 0)
    low, high = -(missing // 2), shape + missing // 2 + missing % 2 - patch
    classes = sorted(value for value, voxels in locations.items() if len(voxels))
    if force_foreground and classes:
        voxels = locations[classes[rng.integers(len(classes))]]
        start = np.clip(np.asarray(voxels[rng.integers(len(voxels))], np.int64) - patch // 2, low, high)
    else:
        start = rng.integers(low, high + 1)
    return _window(image, start, patch), None if label is None else _window(label, start, patch)


def make_patch_stream(folder: str | Path, names: Sequence[str], patch_size: Sequence[int], batch_size: int,
                      seed: int, foreground_oversample: float = 0.33, first_step: int = 0) -> tf.data.Dataset:
    """An endless dataset of (images (B, *patch_size, C) float32, labels (B, *patch_size, 1) float32).

    Batch `step` (counting from 0; the dataset starts at `first_step`) is drawn by a NumPy generator seeded
    by (seed, step): cases uniformly, `sample_patch` from each, the last round(batch_size *
    foreground_oversample) of them (at least one when it is > 0) forced onto foreground.
    """
    folder, names, patch = _complete(folder), list(names), check_patch_shape(patch_size)
    if not names:
        raise DataError(f"make_patch_stream needs at least one case of {folder}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0 or first_step < 0:
        raise ConfigError(f"seed and first_step must be integers >= 0. "
                          f"Received: seed={seed!r}, first_step={first_step!r}")
    oversample = check_foreground_oversample(foreground_oversample)
    forced = max(1, round(batch_size * oversample)) if oversample > 0 else 0
    channels = _channels(folder, names, len(patch))
    locations = functools.lru_cache(maxsize=256)(lambda name: read_cached_case(folder, name)[2]["class_locations"])

    def draw(step):
        rng = np.random.default_rng([seed, int(step)])
        images, labels = [], []
        for index in range(batch_size):
            name = names[rng.integers(len(names))]
            image, label = _open_arrays(folder, name, "r")
            patch_image, patch_label = sample_patch(image, label, locations(name), patch, rng,
                                                    index >= batch_size - forced)
            images.append(patch_image)
            labels.append(patch_label)
        return np.stack(images).astype(np.float32), np.stack(labels)[..., None].astype(np.float32)

    def load(step):
        images, labels = tf.numpy_function(draw, [step], [tf.float32, tf.float32], stateful=False)
        images.set_shape([batch_size, *patch, channels])
        labels.set_shape([batch_size, *patch, 1])
        return images, labels

    steps = tf.data.Dataset.range(first_step, sys.maxsize)
    return steps.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def case_tiles(image, label, patch_size: Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The fixed tiles of one case: starts `tile_starts` per axis (last axis fastest), so every voxel is
    in a tile; along an axis shorter than the patch, one tile with the case centred and zero-padded."""
    patch = check_patch_shape(patch_size)
    starts = [tile_starts(size, length) if size >= length else [-((length - size) // 2)]
              for size, length in zip(image.shape[:len(patch)], patch)]
    for start in itertools.product(*starts):
        yield _window(image, start, patch), None if label is None else _window(label, start, patch)


def make_tile_stream(folder: str | Path, names: Sequence[str], patch_size: Sequence[int]) -> tf.data.Dataset:
    """A finite dataset of every case's `case_tiles`, in `names` order: (image (*patch_size, C) float32,
    label (*patch_size, 1) float32) elements, unbatched."""
    folder, names, patch = _complete(folder), list(names), check_patch_shape(patch_size)
    channels = _channels(folder, names, len(patch)) if names else 1

    def tiles():
        for name in names:
            image, label = _open_arrays(folder, name, "r")
            for tile, tile_label in case_tiles(image, label, patch):
                yield tile.astype(np.float32), tile_label[..., None].astype(np.float32)

    return tf.data.Dataset.from_generator(tiles, output_signature=(
        tf.TensorSpec([*patch, channels], tf.float32), tf.TensorSpec([*patch, 1], tf.float32)))


def check_patch_shape(patch_size) -> tuple[int, ...]:
    """`patch_size` as a tuple of ints (one per spatial axis), or ConfigError unless all are positive."""
    try:
        values = tuple(patch_size)
    except TypeError:
        values = ()
    if not values or not all(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0
                             for value in values):
        raise ConfigError(f"patch_size must be a positive integer per spatial axis. "
                          f"Received: patch_size={patch_size!r}")
    return tuple(int(value) for value in values)


def _window(array, start, size) -> np.ndarray:
    """array[start:start + size] along the leading len(size) axes, zero where the window leaves the array;
    only the part inside is read (a slice of a memmap)."""
    inside = tuple(slice(max(int(first), 0), min(int(first) + length, extent))
                   for first, length, extent in zip(start, size, array.shape))
    placed = tuple(slice(part.start - int(first), part.stop - int(first)) for part, first in zip(inside, start))
    window = np.zeros(tuple(size) + tuple(array.shape[len(size):]), array.dtype)
    if all(part.stop > part.start for part in inside):
        window[placed] = array[inside]
    return window


def _complete(folder) -> Path:
    folder = Path(folder)
    if not is_complete(folder):
        raise DataError(f"cache folder {folder} is incomplete (no {COMPLETE} marker): preprocess it again")
    return folder


def _open_arrays(folder: Path, name: str, mmap_mode: str | None):
    image = np.load(folder / f"{name}.npy", mmap_mode=mmap_mode)
    seg = folder / f"{name}_seg.npy"
    return image, np.load(seg, mmap_mode=mmap_mode) if seg.is_file() else None


def _channels(folder: Path, names: Sequence[str], rank: int) -> int:
    for name in names:
        if not (folder / f"{name}.json").is_file() or not (folder / f"{name}_seg.npy").is_file():
            raise DataError(f"case {name} is not in {folder} with its labels")
    image = np.load(folder / f"{names[0]}.npy", mmap_mode="r")
    if image.ndim != rank + 1:
        raise ConfigError(f"patch_size must have one entry per spatial axis of the cases ({image.ndim - 1}). "
                          f"Received: {rank} entries")
    return int(image.shape[-1])


def _locations(properties: Mapping, rank: int) -> dict[int, np.ndarray]:
    return {int(value): np.asarray(voxels, np.int32).reshape(-1, rank)
            for value, voxels in properties.get("class_locations", {}).items()}


def _write_atomically(path: Path, write: Callable) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as handle:
        temporary = Path(handle.name)
        try:
            write(handle)
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
    try:
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def _plain(value):
    """JSON for NumPy values and paths."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
