"""Pictures of what the model sees and predicts, as uint8 arrays and PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Class colours: background black, then distinct colours (repeats after 10 classes).
PALETTE = np.array([[0, 0, 0], [255, 255, 255], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                    [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]], dtype=np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Float image (H, W, C) in [0, 1] -> uint8 RGB (first channel as grey unless C == 3)."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    rgb = image[..., :3] if image.shape[-1] == 3 else np.repeat(image[..., :1], 3, axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def colorize(classes: np.ndarray) -> np.ndarray:
    """Class-id map (H, W) or (H, W, 1) -> uint8 RGB."""
    classes = np.asarray(classes).astype(np.int64).reshape(np.asarray(classes).shape[:2])
    return PALETTE[classes % len(PALETTE)]


def predicted_class_map(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Probabilities (..., C) -> class ids (...): threshold for C == 1, argmax otherwise."""
    if probabilities.shape[-1] == 1:
        return (probabilities[..., 0] >= threshold).astype(np.int64)
    return probabilities.argmax(axis=-1)


def grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Stack rows of equally sized RGB cells, with a 2-pixel grey gap between columns."""
    lines = []
    for cells in rows:
        gap = np.full((cells[0].shape[0], 2, 3), 128, np.uint8)
        parts = [part for cell in cells for part in (gap, cell)][1:]
        lines.append(np.concatenate(parts, axis=1))
    return np.concatenate(lines, axis=0)


def pair_grid(images, masks) -> np.ndarray:
    """One row per sample: image | mask (images centre-cropped to the mask, as for valid-padding models)."""
    return grid([[to_rgb(centre_crop(image, mask.shape[0])), colorize(mask)] for image, mask in zip(images, masks)])


def centre_crop(array: np.ndarray, size: int) -> np.ndarray:
    offset = (array.shape[0] - size) // 2
    return array[offset:offset + size, offset:offset + size]


def prediction_grid(images: np.ndarray, masks: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """One row per sample: image | truth | prediction."""
    rows = []
    for image, mask, probability in zip(images, masks, probabilities):
        out = probability.shape[0]  # valid-padding models predict the centre
        image, mask = centre_crop(image, out), centre_crop(mask, out)
        rows.append([to_rgb(image), colorize(mask), colorize(predicted_class_map(probability))])
    return grid(rows)


def heatmap(values: np.ndarray) -> np.ndarray:
    """Values (H, W) -> uint8 RGB in matplotlib's viridis, 0 to the maximum (dark blue to yellow)."""
    from matplotlib import colormaps

    values = np.asarray(values, np.float32)
    scaled = values / max(float(values.max()), 1e-12)
    return (colormaps["viridis"](scaled)[..., :3] * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, classes: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A decoded image (any dtype) with its non-background classes tinted in their colours."""
    from .preprocessing import to_unit_range

    image = np.asarray(image)
    rgb = to_rgb(to_unit_range(image if image.ndim == 3 else image[..., None])).astype(np.float32)
    tint = colorize(classes).astype(np.float32)
    tint[classes == 1] = PALETTE[2]  # class 1 is white in masks; tint it red here
    foreground = (np.asarray(classes) > 0)[..., None]
    return np.where(foreground, (1 - alpha) * rgb + alpha * tint, rgb).round().astype(np.uint8)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 or uint16 (H, W, 1 or 3) array as PNG."""
    import tensorflow as tf

    path = Path(path)
    tf.io.write_file(str(path), tf.io.encode_png(np.ascontiguousarray(array)))
    return path
