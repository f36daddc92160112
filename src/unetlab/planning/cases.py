"""The cases a plan is made from: an nnU-Net raw dataset's training cases, or image/mask folder pairs, as
readers (`properties.dataset_properties` runs them in threads), with a fingerprint of their content and of
the settings they are read with."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError

FOLDER_CHANNELS = {1: ("gray",), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}


@dataclass(frozen=True)
class Cases:
    """What the properties are read from; `where` names the data in errors (`data.root='...'`)."""

    names: list[str]
    readers: list[Callable[[], tuple]]
    channel_names: list[str]
    labels: dict[str, int]
    fingerprint: str
    where: str


def nnunet_cases(root: str | Path) -> Cases:
    """The training cases of the nnU-Net v2 raw dataset at `root` (checked as `data=nnunet` checks it)."""
    from ..data.nnunet_raw import read_case, read_raw_dataset
    from ..data.nnunet_source import dataset_fingerprint

    dataset = read_raw_dataset(root)
    where = f"data.root={str(root)!r}"
    readers = [partial(_checked, partial(read_case, case, dataset), case.name, len(dataset.channel_names), where)
               for case in dataset.cases]
    return _require_two(Cases([case.name for case in dataset.cases], readers, list(dataset.channel_names.values()),
                              dict(dataset.labels), dataset_fingerprint(dataset), where))


def folder_cases(images: str | Path, masks: str | Path, *, channels: int, num_classes: int,
                 ignore_index: int | None = None, palette=None, invert_masks: bool = False) -> Cases:
    """Image/mask pairs of two folders (paired by file stem, as `data=folder` pairs them), at spacing 1."""
    from ..data.fingerprint import fingerprint
    from ..data.folder import find_pairs

    pairs = find_pairs(images, masks)
    where = f"data.images={str(images)!r}"
    read = partial(_read_pair, num_classes=num_classes, ignore_index=ignore_index, palette=palette,
                   invert_masks=invert_masks)
    readers = [partial(_checked, partial(read, image, mask), Path(image).name, channels, where)
               for image, mask in pairs]
    names = FOLDER_CHANNELS.get(channels, tuple(f"channel{i}" for i in range(channels)))
    labels = {"background": 0, **{f"class{i}": i for i in range(1, max(num_classes, 2))}}
    settings = json.dumps([channels, num_classes, ignore_index, palette, invert_masks])  # they change the labels read
    key = hashlib.sha256(f"{fingerprint(pairs)} {settings}".encode()).hexdigest()[:16]
    return _require_two(Cases([Path(image).stem for image, _ in pairs], readers, list(names), labels, key, where))


def _read_pair(image: str, mask: str, *, num_classes: int, ignore_index, palette, invert_masks) -> tuple:
    from ..data.decode import read_class_ids
    from ..data.image_files import read_array

    pixels = read_array(image).astype(np.float32)
    label = read_class_ids(mask, max(num_classes, 2) if num_classes > 1 else 1, ignore_index=ignore_index,
                           palette=palette, invert_masks=invert_masks)
    return pixels, label, (1.0, 1.0)


def _checked(read: Callable[[], tuple], name: str, channels: int, where: str) -> tuple:
    """`read()`, refusing a case whose channel count is not the dataset's."""
    image, label, spacing = read()[:3]
    if image.shape[-1] != channels:
        raise DataError(f"case {name} has {image.shape[-1]} channel(s) but the dataset has {channels} ({where}): "
                        f"every case needs the same channels")
    return image, label, spacing


def _require_two(cases: Cases) -> Cases:
    if len(cases.names) < 2:
        raise DataError(f"{cases.where} has {len(cases.names)} case(s); planning needs at least 2 (one to "
                        f"validate on)")
    return cases

