"""Dataset integrity check for image/mask folders, run before training (`task=check_data`).

Reads every file once with Pillow (PNG, JPEG, BMP, GIF; 8- and 16-bit) or tifffile
(TIFF, when installed) into NumPy, and lists every problem it finds instead of stopping
at the first: files without a partner, files that do not decode, image/mask size
mismatches, images whose channel count differs from `data.channels`, mask values that
are not class ids, and NaN/Inf pixels. No TensorFlow here, so it stays fast and can run
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

import hashlib
import io
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .folder import SUPPORTED_SUFFIXES as READABLE_SUFFIXES
from .folder import TIFF_SUFFIXES, palette_colours, scan_images

PROBLEM_KINDS = ("missing_folder", "empty_folder", "duplicate_stem", "missing_mask", "missing_image",
                 "undecodable", "size_mismatch", "channel_mismatch", "label_values", "non_finite")

_CHUNK = 1 << 20
_WORKERS = min(8, os.cpu_count() or 1)
_FINGERPRINT_VERSION = "unetlab-data-fingerprint-v1"


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
    `images`, `masks` (the folders).
    """

    pairs: list[tuple[str, str]]
    problems: list[Problem]
    summary: dict
    images_key: str = "data.images"
    masks_key: str = "data.masks"

    @property
    def ok(self) -> bool:
        return not self.problems

    def format_report(self) -> str:
        """A readable multi-line summary, then every problem on its own line."""
        s = self.summary
        lines = [f"{self.images_key}={s.get('images', '?')}",
                 f"{self.masks_key}={s.get('masks', '?')}",
                 f"  pairs:             {s.get('num_pairs', len(self.pairs))}",
                 f"  image sizes (HxW): {_counts(s.get('image_sizes', {}))}",
                 f"  channels:          {_counts(s.get('channels', {}))}",
                 f"  image dtypes:      {_counts(s.get('image_dtypes', {}))}",
                 f"  class frequencies: {_frequencies(s.get('class_frequencies', {}))}"]
        if s.get("ignored_fraction"):
            lines.append(f"  ignored pixels:    {s['ignored_fraction']:.2%}")
        if s.get("fingerprint"):
            lines.append(f"  fingerprint:       {s['fingerprint']}")
        if self.ok:
            lines.append("no problems found")
        else:
            kinds = Counter(problem.kind for problem in self.problems)
            lines.append(f"{_plural(len(self.problems), 'problem')} "
                         f"({', '.join(f'{count} {kind}' for kind, count in kinds.most_common())}):")
            lines.extend(f"  {problem}" for problem in self.problems)
        return "\n".join(lines)


def read_array(path: str | Path) -> np.ndarray:
    """A PNG/JPEG/BMP/GIF/TIFF file as an (H, W, C) array of its own dtype (C=1 for grayscale).

    16-bit PNGs give uint16, float TIFFs float32. Palette images are expanded to RGB(A),
    as TensorFlow's decoders do; GIFs give their first frame. Raises `DataError` naming the
    file when it cannot be read or decoded.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path} cannot be read ({error.strerror or error})") from None
    try:
        return _decode(data, path.suffix.lower())
    except _Undecodable as error:
        raise DataError(f"{path} cannot be decoded ({error})") from None


def check_folders(images: str | Path, masks: str | Path, *, channels: int, num_classes: int,
                  ignore_index: int | None = None, palette: Sequence[Sequence[int]] | None = None,
                  images_key: str = "data.images", masks_key: str = "data.masks") -> DataReport:
    """Check an image folder against its mask folder; files are paired by stem (`a.png` <-> `a.png`).

    Never raises for broken data: every problem goes into the report (`raise_if_broken`
    turns it into a `DataError`). Raises `ConfigError` for impossible arguments.
    """
    if channels < 1:
        raise ConfigError(f"data.channels must be at least 1. Received: data.channels={channels}")
    if num_classes < 1:
        raise ConfigError(f"data.num_classes must be at least 1. Received: data.num_classes={num_classes}")
    colours = _palette_codes(palette, num_classes, ignore_index) if palette is not None else None
    rules = _MaskRules(num_classes=num_classes, ignore_index=ignore_index, palette=colours)

    display = _Display(images, masks)
    problems: list[Problem] = []
    image_files = _list_folder(images, images_key, display, problems)
    mask_files = _list_folder(masks, masks_key, display, problems)
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

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
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
        "fingerprint": _combine(digests) if len(digests) == 2 * len(pairs) else None,
        "images": str(images),
        "masks": str(masks),
    }
    return DataReport(pairs=pairs, problems=problems, summary=summary, images_key=images_key, masks_key=masks_key)


def fingerprint(pairs: Iterable[tuple[str | Path, str | Path]]) -> str:
    """16 hex digits identifying the dataset's contents: the same for identical copies anywhere.

    Hashes (role, file name, size, sha256 of the bytes) of every image and mask; names are
    taken relative to their folder, so moving the folders does not change it, while renaming,
    re-pairing or changing any byte of any file does. Raises `DataError` for an unreadable file.
    """
    files = [(role, Path(path)) for pair in pairs for role, path in zip(("image", "mask"), pair)]
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        digests = list(pool.map(lambda item: _file_digest(*item), files))
    return _combine(digests)


def raise_if_broken(report: DataReport, *, show: int = 3) -> DataReport:
    """Raise `DataError` (one line: the count and the first `show` problems) unless the report is ok."""
    if report.ok:
        return report
    problems = report.problems
    shown = "; ".join(str(problem) for problem in problems[:show])
    more = f"; (+{len(problems) - show} more)" if len(problems) > show else ""
    raise DataError(f"{_plural(len(problems), 'problem')} in {report.images_key}/{report.masks_key}: "
                    f"{shown}{more} - run task=check_data for the full list")


# --- reading files ---------------------------------------------------------------------------------------------

class _Undecodable(Exception):
    """The reason a file's bytes are not an image we can read."""


def _decode(data: bytes, suffix: str) -> np.ndarray:
    if not data:
        raise _Undecodable("file is empty")
    array = _decode_tiff(data) if suffix in TIFF_SUFFIXES else _decode_pillow(data)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise _Undecodable(f"unexpected pixel array of shape {array.shape}")
    return array


def _decode_pillow(data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            image.load()
            mode = image.mode
            if mode == "P" or mode == "PA":
                image = image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
            elif mode == "1":
                image = image.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            array = np.asarray(image)
    except UnidentifiedImageError:
        raise _Undecodable("not a PNG, JPEG, BMP or GIF image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # truncated or corrupt data
        raise _Undecodable(str(error) or type(error).__name__) from None
    if mode.startswith("I;16") or (mode == "I" and array.size and 0 <= array.min() and array.max() <= 65535):
        array = array.astype(np.uint16)  # 16-bit PNGs: native byte order, unsigned
    return array


def _decode_tiff(data: bytes) -> np.ndarray:
    try:
        import tifffile
    except ImportError:
        raise _Undecodable("cannot read TIFF: install tifffile") from None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            series = tiff.series[0]
            array, axes = series.asarray(), series.axes
    except Exception as error:  # tifffile raises many types for corrupt files
        raise _Undecodable(str(error).splitlines()[0] if str(error) else type(error).__name__) from None
    # Keep Y, X and at most one sample/channel axis (S or C); every other axis must have length 1.
    if "Y" not in axes or "X" not in axes:
        raise _Undecodable(f"has no 2-D image (axes {axes})")
    channel_axes = [i for i, axis in enumerate(axes) if axis in "SC" and array.shape[i] > 1]
    stacked = [i for i, axis in enumerate(axes) if axis not in "YXSC" and array.shape[i] > 1]
    if stacked or len(channel_axes) > 1:
        raise _Undecodable(f"holds a {'x'.join(map(str, array.shape))} stack (axes {axes}); "
                           f"expected one 2-D image")
    order = [axes.index("Y"), axes.index("X"), *channel_axes]
    dropped = [i for i in range(array.ndim) if i not in order]
    squeezed = array.squeeze(axis=tuple(dropped)) if dropped else array
    return np.transpose(squeezed, [i - sum(d < i for d in dropped) for i in order])


def _read(path: str) -> tuple[bytes, tuple[str, int, str]]:
    data = Path(path).read_bytes()
    return data, (Path(path).name, len(data), hashlib.sha256(data).hexdigest())


def _file_digest(role: str, path: Path) -> tuple[str, str, int, str]:
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        raise DataError(f"cannot fingerprint {path}: {error.strerror or error}") from None
    return role, path.name, size, digest.hexdigest()


def _combine(digests: list[tuple[str, str, int, str]]) -> str:
    lines = sorted("\t".join(map(str, entry)) for entry in digests)
    return hashlib.sha256("\n".join([_FINGERPRINT_VERSION, *lines]).encode()).hexdigest()[:16]


# --- checking one pair -----------------------------------------------------------------------------------------

@dataclass
class _MaskRules:
    num_classes: int
    ignore_index: int | None
    palette: dict[int, int] | None  # colour code (r << 16 | g << 8 | b) -> palette index


@dataclass
class _PairResult:
    problems: list[Problem] = field(default_factory=list)
    digests: list[tuple[str, str, int, str]] = field(default_factory=list)
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
                                           f"{display(image_path)} has {_plural(image.shape[2], 'channel')}, "
                                           f"data.channels={channels}"))
        _check_finite(image, image_path, result, display)
    if image is not None and mask is not None and image.shape[:2] != mask.shape[:2]:
        result.problems.append(Problem("size_mismatch", image_path,
                                       f"{display(image_path)} is {_size(image)} but {display(mask_path)} "
                                       f"is {_size(mask)}"))
    if mask is not None and _check_finite(mask, mask_path, result, display):
        _check_labels(mask, mask_path, rules, result, display)
    return result


def _load(path: str, role: str, result: _PairResult, display: "_Display") -> np.ndarray | None:
    try:
        data, (name, size, sha) = _read(path)
    except OSError as error:
        result.problems.append(Problem("undecodable", path, f"{display(path)} cannot be read "
                                                            f"({error.strerror or error})"))
        return None
    result.digests.append((role, name, size, sha))
    try:
        return _decode(data, Path(path).suffix.lower())
    except _Undecodable as error:
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
                                          f"holds one class id per pixel (or set data.palette for colour masks)"))
            return
    values, counts = _value_counts(mask[:, :, 0])
    if np.issubdtype(values.dtype, np.floating):
        fractional = values != np.round(values)
        if fractional.any():
            result.problems.append(Problem(
                "label_values", path, f"{shown} has non-integer values {_preview(values[fractional])} in "
                                      f"{int(counts[fractional].sum())} pixels; masks hold class ids"))
            return
    num_ids = max(rules.num_classes, 2)
    ignore = rules.ignore_index
    is_ignored = values == ignore if ignore is not None else np.zeros(values.shape, bool)
    labels, label_counts = values[~is_ignored].astype(np.int64), counts[~is_ignored]
    classes = f"data.num_classes={rules.num_classes}"
    allowed = f" and data.ignore_index={ignore}" if ignore is not None else ""
    if rules.num_classes <= 2:
        outside = ~np.isin(labels, (0, 1, 255))
        if outside.any():
            result.problems.append(Problem(
                "label_values", path, f"{shown} has values {_preview(labels[outside])} outside 0/1 and 0/255"
                                      f"{allowed} (binary masks, {classes}) in "
                                      f"{int(label_counts[outside].sum())} pixels{jpeg_hint}"))
            return
        if np.isin(1, labels) and np.isin(255, labels):
            result.problems.append(Problem(
                "label_values", path, f"{shown} mixes 0/1 and 0/255 labels (values {_preview(labels)}); a binary "
                                      f"mask ({classes}) uses one of them{jpeg_hint}"))
            return
        labels = np.where(labels == 255, 1, labels)
    else:
        outside = (labels < 0) | (labels >= num_ids)
        if outside.any():
            result.problems.append(Problem(
                "label_values", path, f"{shown} has values {_preview(labels[outside])} outside the classes "
                                      f"0..{num_ids - 1}{allowed} ({classes}) in "
                                      f"{int(label_counts[outside].sum())} pixels{jpeg_hint}"))
            return
    for label, count in zip(labels.tolist(), label_counts.tolist()):
        result.class_pixels[label] += count
    result.ignored_pixels += int(counts[is_ignored].sum())


def _check_palette_mask(mask: np.ndarray, path: str, rules: _MaskRules, result: _PairResult, shown: str,
                        jpeg_hint: str) -> None:
    if mask.shape[2] not in (3, 4):
        result.problems.append(Problem("channel_mismatch", path, f"{shown} has {_plural(mask.shape[2], 'channel')}"
                                                                 f", but data.palette needs RGB masks"))
        return
    rgb = mask[:, :, :3].astype(np.int64)
    codes, counts = np.unique((rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2], return_counts=True)
    index = np.array([rules.palette.get(code, -1) for code in codes.tolist()], dtype=np.int64)
    unknown = index < 0
    if rules.ignore_index is not None:  # as the pipeline does: colours outside the palette are ignored
        index[unknown] = rules.ignore_index
        unknown[:] = False
    if unknown.any():
        examples = ", ".join(str([(c >> 16) & 255, (c >> 8) & 255, c & 255]) for c in codes[unknown][:3].tolist())
        more = f" (+{int(unknown.sum()) - 3} more)" if unknown.sum() > 3 else ""
        colours = _plural(int(unknown.sum()), "colour")
        result.problems.append(Problem(
            "label_values", path, f"{shown} has {colours} not in data.palette ({len(rules.palette)} colours), "
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


def _palette_codes(palette: Sequence[Sequence[int]], num_classes: int, ignore_index: int | None) -> dict[int, int]:
    """The checked palette as colour code (r << 16 | g << 8 | b) -> class id."""
    return {(r << 16) | (g << 8) | b: index
            for index, (r, g, b) in enumerate(palette_colours(palette, num_classes, ignore_index))}


# --- folders and messages --------------------------------------------------------------------------------------

def _list_folder(directory: str | Path, key: str, display: "_Display",
                 problems: list[Problem]) -> dict[str, Path] | None:
    """Readable image files of a folder by stem, or None (with a problem) if there are none."""
    folder = Path(directory)
    if not folder.is_dir():
        problems.append(Problem("missing_folder", str(directory), f"{key}={str(directory)!r} is not a directory"))
        return None
    files, clashes = scan_images(folder)
    for kept, other in clashes:
        problems.append(Problem("duplicate_stem", str(other), f"{display(kept)} and {display(other)} share the stem "
                                                              f"{kept.stem!r}; pairing needs one file per stem"))
    if not files:
        problems.append(Problem("empty_folder", str(directory), f"{key}={str(directory)!r} holds no images "
                                                                f"({', '.join(READABLE_SUFFIXES)})"))
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


def _preview(values: np.ndarray, limit: int = 8) -> str:
    items = [int(v) if float(v).is_integer() else float(v) for v in np.asarray(values).tolist()]
    text = ", ".join(map(str, items[:limit]))
    return f"[{text}, ... (+{len(items) - limit} more)]" if len(items) > limit else f"[{text}]"


def _size(array: np.ndarray) -> str:
    return f"{array.shape[0]}x{array.shape[1]}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _counts(counts: dict) -> str:
    return ", ".join(f"{key} ({count})" for key, count in counts.items()) or "-"


def _frequencies(frequencies: dict) -> str:
    return ", ".join(f"{label}: {fraction:.2%}" for label, fraction in frequencies.items()) or "-"
