"""A short identifier of a dataset's contents, the same for identical copies anywhere.

Each file gives a digest (role, file name, size, sha256 of the bytes); the fingerprint
hashes the sorted digests. The integrity check (`check_folders`) digests the bytes it
reads anyway and combines them into the same fingerprint, so files are read once.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from ..errors import DataError
from .image_files import READ_WORKERS

Digest = tuple[str, str, int, str]  # (role: "image" or "mask", file name, size in bytes, sha256 hex)

_CHUNK = 1 << 20
_FINGERPRINT_VERSION = "unetlab-data-fingerprint-v1"


def fingerprint(pairs: Iterable[tuple[str | Path, str | Path]]) -> str:
    """16 hex digits identifying the dataset's contents: the same for identical copies anywhere.

    Hashes (role, file name, size, sha256 of the bytes) of every image and mask; names are
    taken relative to their folder, so moving the folders does not change it, while renaming,
    re-pairing or changing any byte of any file does. Raises `DataError` for an unreadable file.
    """
    files = [(role, Path(path)) for pair in pairs for role, path in zip(("image", "mask"), pair)]
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        digests = list(pool.map(lambda item: file_digest(*item), files))
    return combine_digests(digests)


def bytes_digest(role: str, path: str | Path, data: bytes) -> Digest:
    """The digest of a file whose bytes were read already."""
    return role, Path(path).name, len(data), hashlib.sha256(data).hexdigest()


def file_digest(role: str, path: str | Path) -> Digest:
    """The digest of a file, read in chunks; `DataError` if it cannot be read."""
    path = Path(path)
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        raise DataError(f"cannot fingerprint {path}: {error.strerror or error}") from None
    return role, path.name, size, digest.hexdigest()


def combine_digests(digests: Iterable[Digest]) -> str:
    """The fingerprint of a dataset from the digests of all its files (in any order)."""
    lines = sorted("\t".join(map(str, entry)) for entry in digests)
    return hashlib.sha256("\n".join([_FINGERPRINT_VERSION, *lines]).encode()).hexdigest()[:16]
