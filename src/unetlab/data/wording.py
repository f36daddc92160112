"""How integrity messages write values: short previews, sizes, plurals, counts, frequencies."""

from __future__ import annotations

import numpy as np


def preview(values: np.ndarray, limit: int = 8) -> str:
    items = [int(v) if float(v).is_integer() else float(v) for v in np.asarray(values).tolist()]
    text = ", ".join(map(str, items[:limit]))
    return f"[{text}, ... (+{len(items) - limit} more)]" if len(items) > limit else f"[{text}]"


def size(array: np.ndarray) -> str:
    return f"{array.shape[0]}x{array.shape[1]}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def counts(counts: dict) -> str:
    return ", ".join(f"{key} ({count})" for key, count in counts.items()) or "-"


def frequencies(frequencies: dict) -> str:
    return ", ".join(f"{label}: {fraction:.2%}" for label, fraction in frequencies.items()) or "-"
