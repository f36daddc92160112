"""The integrity check of a folder dataset, remembered by its contents.

A sweep runs the check in every trial, and data-parallel training on every worker: each time it
decoded every image and mask. A passed check is the same for the same bytes and the same rules, so
`checked_folders` keeps its result in a cache folder under a key made of the sha256 of every image
file in both folders (names and bytes: hashing is a fraction of decoding) and the check's
arguments; the next check of unchanged data reads it instead of decoding. Broken data is never
cached: it is checked, and reported, every time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import DataError
from .checks import DataReport, check_folders, message_names
from . import image_files
from .fingerprint import file_digest
from .image_files import READ_WORKERS, SUPPORTED_SUFFIXES

log = logging.getLogger(__name__)

CACHE_VERSION = "unetlab-data-check-v1"  # raise when the check or its summary changes
_INT_KEYED = ("channels", "class_frequencies")  # summary dicts whose keys JSON turns into text


def default_cache_dir() -> Path | None:
    """`$UNETLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/unetlab`, else `~/.cache/unetlab`; checks go in
    its `data-checks/`. None (no cache) where none is set and there is no home folder."""
    if os.environ.get("UNETLAB_CACHE_DIR"):
        return Path(os.environ["UNETLAB_CACHE_DIR"]) / "data-checks"
    try:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no $HOME and no passwd entry (a container's arbitrary uid)
        return None
    return cache / "unetlab" / "data-checks"


def checked_folders(images: str | Path, masks: str | Path, *, cache_dir: Path | None, **arguments) -> DataReport:
    """`check_folders(images, masks, **arguments)`, read from `cache_dir` when these folders' image
    files (by name and content) and these arguments passed it before; stored there when they pass.
    `cache_dir=None`: no cache. The cache is only a shortcut: an unreadable entry is checked again."""
    if cache_dir is None:
        return check_folders(images, masks, **arguments)
    key = cache_key(images, masks, arguments)
    if key is None:  # a missing folder or an unreadable file: the check says which
        return check_folders(images, masks, **arguments)
    entry = Path(cache_dir) / f"{key}.json"
    cached = read_entry(entry, images, masks, arguments.get("names"))
    if cached is not None:
        log.info("data check of %s and %s: passed before with these files and settings (%s)", images, masks, entry)
        return cached
    report = check_folders(images, masks, **arguments)
    if report.ok:
        write_entry(entry, report, images, masks)
    return report


def cache_key(images: str | Path, masks: str | Path, arguments: dict) -> str | None:
    """sha256 of the check's version, its rules, what decodes the files (the pixel limit, Pillow's
    and tifffile's versions) and the digests of both folders' image files."""
    rules = {name: value for name, value in arguments.items() if name != "names"}  # names only word messages
    try:
        files = [(role, path) for role, folder in (("image", images), ("mask", masks))
                 for path in sorted(Path(folder).iterdir())
                 if path.suffix.lower() in SUPPORTED_SUFFIXES and path.is_file()]
        with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
            digests = list(pool.map(lambda item: file_digest(*item), files))
    except (OSError, DataError):
        return None
    text = json.dumps([CACHE_VERSION, rules, decoders(), digests], default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def decoders() -> list:
    """What decides whether a file decodes, beside its bytes: a change of either may turn a pass into a fail."""
    from importlib import metadata

    return [image_files.MAX_PIXELS, *(metadata.version(name) for name in ("pillow", "tifffile"))]


def read_entry(entry: Path, images, masks, names) -> DataReport | None:
    try:
        stored = json.loads(entry.read_text())
        summary = stored["summary"]
        for key in _INT_KEYED:
            summary[key] = {int(value): share for value, share in summary[key].items()}
        pairs = [(str(Path(images) / image), str(Path(masks) / mask)) for image, mask in stored["pairs"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    summary.update(images=str(images), masks=str(masks))
    return DataReport(pairs=pairs, problems=[], summary=summary, names=message_names(names))


def write_entry(entry: Path, report: DataReport, images, masks) -> None:
    """Store a passed check atomically (a reader sees a whole entry or none); a cache that cannot be
    written is skipped."""
    stored = {"summary": {key: value for key, value in report.summary.items() if key not in ("images", "masks")},
              "pairs": [(Path(image).name, Path(mask).name) for image, mask in report.pairs]}
    temporary = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=entry.parent, suffix=".tmp", delete=False) as handle:
            temporary = Path(handle.name)
            json.dump(stored, handle)
        os.replace(temporary, entry)
    except OSError as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        log.warning("data check not cached in %s: %s", entry.parent, error)
