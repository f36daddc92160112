"""Dataset integrity check for image/mask folders, to run before training.

Reads every file once (`unetlab.data.image_files`) into NumPy, and lists every problem
it finds instead of stopping at the first: file names that are not UTF-8, files without a
partner, files that do not decode (or have more than `image_files.MAX_PIXELS` pixels),
image/mask size mismatches, images whose channel count differs from `channels`, mask values
that are not class ids, and NaN/Inf pixels. No TensorFlow here, so it stays fast and can run
on a machine without an accelerator.

Mask conventions accepted as valid:

- binary (`num_classes` 1 or 2): only 0/1, or only 0/255 (255 counts as class 1);
- `num_classes=K` > 2: class ids 0..K-1;
- `ignore_index` (e.g. 255): allowed in any mask, left out of the class frequencies;
- `palette` (a list of [r, g, b], index = class id): masks are RGB and every pixel's
  colour must be a palette entry, unless `ignore_index` is set: other colours are then
  ignored pixels, as in the training pipeline.

    report = check_folders("data/images", "data/masks", channels=1, num_classes=2)
    print(report.format_report())
    raise_if_broken(report)
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..labels import check_ignore_index, colour_code, palette_colours
from .fingerprint import Digest, bytes_digest, combine_digests
from .image_files import READ_WORKERS, SUPPORTED_SUFFIXES, Undecodable, decode_array, printable, scan_images
from .wording import counts, frequencies, plural, preview, size

PROBLEM_KINDS = ("missing_folder", "empty_folder", "file_name", "duplicate_stem", "missing_mask", "missing_image",
                 "undecodable", "size_mismatch", "channel_mismatch", "label_values", "non_finite")
_NAMED = ("images", "masks", "channels", "num_classes", "ignore_index", "palette")  # what messages name


@dataclass
class Problem:
    """One thing wrong with the data; `path` is the file (or folder) it is about.

    `message` is one line without the kind; `str(problem)` is `"kind: message"`.
    """

    kind: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass
class DataReport:
    """What `check_folders` found: matched pairs, every problem, and a summary of the data.

    `summary` keys: `num_pairs`, `image_sizes` ({"HxW": count}), `channels` ({channels: count}),
    `image_dtypes` ({dtype: count}), `class_frequencies` ({class id: pixel fraction}, ignored
    pixels left out), `ignored_fraction`, `fingerprint` (of the pairs, see `fingerprint`),
    `image_digests` ({image file name: sha256 of its bytes}), `images`, `masks` (the folders).
    `names`: how messages name the arguments (see `check_folders`).
    """

    pairs: list[tuple[str, str]]
    problems: list[Problem]
    summary: dict
    names: dict[str, str] = field(default_factory=lambda: message_names(None))

    @property
    def ok(self) -> bool:
        return not self.problems

    def format_report(self) -> str:
        """A readable multi-line summary, then every problem on its own line."""
        s = self.summary
        lines = [f"{self.names['images']}={s.get('images', '?')}",
                 f"{self.names['masks']}={s.get('masks', '?')}",
                 f"  pairs:             {s.get('num_pairs', len(self.pairs))}",
                 f"  image sizes (HxW): {counts(s.get('image_sizes', {}))}",
                 f"  channels:          {counts(s.get('channels', {}))}",
                 f"  image dtypes:      {counts(s.get('image_dtypes', {}))}",
                 f"  class frequencies: {frequencies(s.get('class_frequencies', {}))}"]
        if s.get("ignored_fraction"):
            lines.append(f"  ignored pixels:    {s['ignored_fraction']:.2%}")
        if s.get("fingerprint"):
            lines.append(f"  fingerprint:       {s['fingerprint']}")
        if self.ok:
            lines.append("no problems found")
        else:
            kinds = Counter(problem.kind for problem in self.problems)
            lines.append(f"{plural(len(self.problems), 'problem')} "
                         f"({', '.join(f'{count} {kind}' for kind, count in kinds.most_common())}):")
            lines.extend(f"  {problem}" for problem in self.problems)
        return "\n".join(lines)


def message_names(names: Mapping[str, str] | None) -> dict[str, str]:
    """Every argument a message may name, as the caller calls it (default: its own name)."""
    return {**{key: key for key in _NAMED}, **(names or {})}


def check_folders(images: str | Path, masks: str | Path, *, channels: int, num_classes: int,
                  ignore_index: int | None = None, palette: Sequence[Sequence[int]] | None = None,
                  names: Mapping[str, str] | None = None) -> DataReport:
    """Check an image folder against its mask folder; files are paired by stem (`a.png` <-> `a.png`).

    Never raises for broken data: every problem goes into the report (`raise_if_broken`
    turns it into a `DataError`). Raises `ConfigError` for impossible arguments.
    `names` maps argument names to the names messages use instead (a caller's own keys, e.g.
    {"images": "data.val_images", "num_classes": "data.num_classes"}); unnamed ones keep their own.
    """
    if channels < 1:
        raise ConfigError(f"channels must be at least 1. Received: channels={channels}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1. Received: num_classes={num_classes}")
    ignore_index = check_ignore_index(ignore_index, num_classes)
    codes = None  # colour code -> class id
    if palette is not None:
        codes = {colour_code(*rgb): i for i, rgb in enumerate(palette_colours(palette, num_classes, ignore_index))}
    names = message_names(names)
    rules = _MaskRules(num_classes=num_classes, ignore_index=ignore_index, palette=codes, names=names)

    display = _Display(images, masks)
    problems: list[Problem] = []
    image_files = _list_folder(images, names["images"], display, problems)
    mask_files = _list_folder(masks, names["masks"], display, problems)
    image_files, mask_files = image_files or {}, mask_files or {}
    if image_files and mask_files:  # a missing or empty folder is one problem, not one per file
        for stem in sorted(set(image_files) - set(mask_files)):
            path = image_files[stem]
            problems.append(Problem("missing_mask", str(path), f"{display(path)} has no mask (no file named "
                                                               f"{stem}.* in {display.folder(masks)})"))
        for stem in sorted(set(mask_files) - set(image_files)):
            path = mask_files[stem]
            problems.append(Problem("missing_image", str(path), f"{display(path)} has no image (no file named "
                                                                f"{stem}.* in {display.folder(images)})"))
    stems = sorted(set(image_files) & set(mask_files))
    pairs = [(str(image_files[stem]), str(mask_files[stem])) for stem in stems]

    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        results = list(pool.map(lambda pair: _check_pair(pair, channels, rules, display), pairs))

    sizes, channel_counts, dtypes, class_pixels = Counter(), Counter(), Counter(), Counter()
    ignored = 0
    digests = []
    for result in results:
        problems.extend(result.problems)
        digests.extend(result.digests)
        if result.image_shape is not None:
            height, width, image_channels = result.image_shape
            sizes[f"{height}x{width}"] += 1
            channel_counts[image_channels] += 1
            dtypes[result.image_dtype] += 1
        class_pixels.update(result.class_pixels)
        ignored += result.ignored_pixels

    counted = sum(class_pixels.values())
    class_ids = range(max(num_classes, 2))
    summary = {
        "num_pairs": len(pairs),
        "image_sizes": dict(sizes.most_common()),
        "channels": dict(channel_counts.most_common()),
        "image_dtypes": dict(dtypes.most_common()),
        "class_frequencies": {i: class_pixels[i] / counted for i in class_ids} if counted else {},
        "ignored_fraction": ignored / (counted + ignored) if counted + ignored else 0.0,
        "fingerprint": combine_digests(digests) if len(digests) == 2 * len(pairs) else None,
        "image_digests": {name: sha256 for role, name, _, sha256 in digests if role == "image"},
        "images": str(images),
        "masks": str(masks),
    }
    return DataReport(pairs=pairs, problems=problems, summary=summary, names=names)


def raise_if_broken(report: DataReport, *, show: int = 3,
                    more_help: str = "DataReport.format_report() lists them all") -> DataReport:
    """Raise `DataError` (one line: the count, the first `show` problems and where to see them all)
    unless the report is ok."""
    if report.ok:
        return report
    problems = report.problems
    shown = "; ".join(str(problem) for problem in problems[:show])
    more = f"; (+{len(problems) - show} more)" if len(problems) > show else ""
    raise DataError(f"{plural(len(problems), 'problem')} in {report.names['images']}/{report.names['masks']}: "
                    f"{shown}{more} - {more_help}")


# --- checking one pair -----------------------------------------------------------------------------------------

@dataclass
class _MaskRules:
    num_classes: int
    ignore_index: int | None
    palette: dict[int, int] | None  # colour code (`colour_code`) -> palette index
    names: dict[str, str]  # how messages name the arguments


@dataclass
class _PairResult:
    problems: list[Problem] = field(default_factory=list)
    digests: list[Digest] = field(default_factory=list)
    image_shape: tuple[int, int, int] | None = None
    image_dtype: str = ""
    class_pixels: Counter = field(default_factory=Counter)
    ignored_pixels: int = 0


def _check_pair(pair: tuple[str, str], channels: int, rules: _MaskRules, display: "_Display") -> _PairResult:
    result = _PairResult()
    image = _load(pair[0], "image", result, display)
    mask = _load(pair[1], "mask", result, display)
    image_path, mask_path = pair
    if image is not None:
        result.image_shape, result.image_dtype = image.shape, str(image.dtype)
        if image.shape[2] != channels:
            result.problems.append(Problem("channel_mismatch", image_path,
                                           f"{display(image_path)} has {plural(image.shape[2], 'channel')}, "
                                           f"{rules.names['channels']}={channels}"))
        _check_finite(image, image_path, result, display)
    if image is not None and mask is not None and image.shape[:2] != mask.shape[:2]:
        result.problems.append(Problem("size_mismatch", image_path,
                                       f"{display(image_path)} is {size(image)} but {display(mask_path)} "
                                       f"is {size(mask)}"))
    if mask is not None and _check_finite(mask, mask_path, result, display):
        _check_labels(mask, mask_path, rules, result, display)
    return result


def _load(path: str, role: str, result: _PairResult, display: "_Display") -> np.ndarray | None:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        result.problems.append(Problem("undecodable", path, f"{display(path)} cannot be read "
                                                            f"({error.strerror or error})"))
        return None
    result.digests.append(bytes_digest(role, path, data))
    try:
        return decode_array(data, Path(path).suffix)
    except Undecodable as error:
        result.problems.append(Problem("undecodable", path, f"{display(path)} cannot be decoded ({error})"))
        return None


def _check_finite(array: np.ndarray, path: str, result: _PairResult, display: "_Display") -> bool:
    """Report NaN/Inf pixels of a float array; False when there are some."""
    if not np.issubdtype(array.dtype, np.floating):
        return True
    bad = int(np.count_nonzero(~np.isfinite(array).all(axis=2)))
    if bad:
        result.problems.append(Problem("non_finite", path, f"{display(path)} has {bad} NaN/Inf "
                                                           f"{'pixel' if bad == 1 else 'pixels'}"))
    return not bad


def _check_labels(mask: np.ndarray, path: str, rules: _MaskRules, result: _PairResult,
                  display: "_Display") -> None:
    shown = display(path)
    jpeg_hint = (" (JPEG compression changes label values: save masks as PNG)"
                 if Path(path).suffix.lower() in (".jpg", ".jpeg") else "")
    if rules.palette is not None:
        _check_palette_mask(mask, path, rules, result, shown, jpeg_hint)
        return
    colour_channels = mask.shape[2] - 1 if mask.shape[2] in (2, 4) else mask.shape[2]  # alpha is ignored
    if colour_channels > 1:
        if not all(np.array_equal(mask[:, :, 0], mask[:, :, c]) for c in range(1, colour_channels)):
            result.problems.append(Problem(
                "channel_mismatch", path, f"{shown} has {mask.shape[2]} channels with different values; a mask "
                                          f"holds one class id per pixel (or set {rules.names['palette']} for colour masks)"))
            return
    values, counts = _value_counts(mask[:, :, 0])
    if np.issubdtype(values.dtype, np.floating):
        fractional = values != np.round(values)
        if fractional.any():
            result.problems.append(Problem(
                "label_values", path, f"{shown} has non-integer values {preview(values[fractional])} in "
                                      f"{int(counts[fractional].sum())} pixels; masks hold class ids"))
            return
    num_ids = max(rules.num_classes, 2)
    ignore = rules.ignore_index
    is_ignored = values == ignore if ignore is not None else np.zeros(values.shape, bool)
    labels, label_counts = values[~is_ignored].astype(np.int64), counts[~is_ignored]
    classes = f"{rules.names['num_classes']}={rules.num_classes}"
    allowed = f" and {rules.names['ignore_index']}={ignore}" if ignore is not None else ""
    binary = rules.num_classes <= 2
    if binary:
        outside, expected = ~np.isin(labels, (0, 1, 255)), f"0/1 and 0/255{allowed} (binary masks, {classes})"
    else:
        outside, expected = (labels < 0) | (labels >= num_ids), f"the classes 0..{num_ids - 1}{allowed} ({classes})"
    if outside.any():
        result.problems.append(Problem(
            "label_values", path, f"{shown} has values {preview(labels[outside])} outside {expected} in "
                                  f"{int(label_counts[outside].sum())} pixels{jpeg_hint}"))
        return
    if binary:
        if np.isin(1, labels) and np.isin(255, labels):
            result.problems.append(Problem(
                "label_values", path, f"{shown} mixes 0/1 and 0/255 labels (values {preview(labels)}); a binary "
                                      f"mask ({classes}) uses one of them{jpeg_hint}"))
            return
        labels = np.where(labels == 255, 1, labels)
    for label, count in zip(labels.tolist(), label_counts.tolist()):
        result.class_pixels[label] += count
    result.ignored_pixels += int(counts[is_ignored].sum())


def _check_palette_mask(mask: np.ndarray, path: str, rules: _MaskRules, result: _PairResult, shown: str,
                        jpeg_hint: str) -> None:
    if mask.shape[2] not in (3, 4):
        result.problems.append(Problem("channel_mismatch", path, f"{shown} has {plural(mask.shape[2], 'channel')}"
                                                                 f", but {rules.names['palette']} needs RGB masks"))
        return
    rgb = mask[:, :, :3].astype(np.int64)
    codes, counts = np.unique(colour_code(rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]), return_counts=True)
    index = np.array([rules.palette.get(code, -1) for code in codes.tolist()], dtype=np.int64)
    unknown = index < 0
    if rules.ignore_index is not None:  # as the pipeline does: colours outside the palette are ignored
        index[unknown] = rules.ignore_index
        unknown[:] = False
    if unknown.any():
        examples = ", ".join(str([(c >> 16) & 255, (c >> 8) & 255, c & 255]) for c in codes[unknown][:3].tolist())
        more = f" (+{int(unknown.sum()) - 3} more)" if unknown.sum() > 3 else ""
        colours = plural(int(unknown.sum()), "colour")
        result.problems.append(Problem(
            "label_values", path, f"{shown} has {colours} not in {rules.names['palette']} ({len(rules.palette)} colours), "
                                  f"e.g. {examples}{more}, in {int(counts[unknown].sum())} pixels{jpeg_hint}"))
        return
    is_ignored = index == rules.ignore_index if rules.ignore_index is not None else np.zeros(index.shape, bool)
    for label, count in zip(index[~is_ignored].tolist(), counts[~is_ignored].tolist()):
        result.class_pixels[label] += count
    result.ignored_pixels += int(counts[is_ignored].sum())


def _value_counts(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a 2-D array and how many pixels hold each (bincount for 8/16-bit)."""
    if channel.dtype in (np.uint8, np.uint16):
        counts = np.bincount(channel.ravel(), minlength=1)
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(channel, return_counts=True)


# --- folders and messages --------------------------------------------------------------------------------------

def _list_folder(directory: str | Path, key: str, display: "_Display",
                 problems: list[Problem]) -> dict[str, Path] | None:
    """Readable image files of a folder by stem, or None (with a problem) if there are none."""
    folder = Path(directory)
    if not folder.is_dir():
        problems.append(Problem("missing_folder", str(directory), f"{key}={str(directory)!r} is not a directory"))
        return None
    files, clashes, badly_named = scan_images(folder)
    for path in badly_named:
        problems.append(Problem("file_name", printable(path), f"{printable(display(path))}: file name not UTF-8, "
                                                              f"rename it"))
    for kept, other in clashes:
        problems.append(Problem("duplicate_stem", str(other), f"{display(kept)} and {display(other)} share the stem "
                                                              f"{kept.stem!r}; pairing needs one file per stem"))
    if not files:
        problems.append(Problem("empty_folder", str(directory), f"{key}={str(directory)!r} holds no images "
                                                                f"({', '.join(SUPPORTED_SUFFIXES)})"))
        return None
    return files


class _Display:
    """Short names for messages: paths relative to the folder holding both images and masks."""

    def __init__(self, images: str | Path, masks: str | Path):
        try:
            self.base = os.path.commonpath([os.path.abspath(images), os.path.abspath(masks)])
        except ValueError:  # different drives
            self.base = None

    def __call__(self, path: str | Path) -> str:
        path = os.path.abspath(path)
        if self.base is None:
            return f"{Path(path).parent.name}/{Path(path).name}"
        return Path(os.path.relpath(path, self.base)).as_posix()

    def folder(self, directory: str | Path) -> str:
        shown = self(directory)
        return "./" if shown == "." else shown + "/"
