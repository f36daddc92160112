"""Pictures of what the model sees and predicts, as uint8 arrays and PNG files.

`labelled_grid` lays out rows of tiles under a header naming the columns, each tile enlarged or
shrunk to about `TILE_SIZE` pixels; `prediction_grid` fills it with image | truth | prediction |
overlay rows, each labelled with its Dice (predictions.png after training, worst.png of
task=evaluate). Text uses Pillow's built-in font: no font file is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .preprocessing import to_unit_range

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


def predicted_class_map(probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Probabilities (..., C) -> class ids (...): class 1 where its probability reaches `threshold` (0.5 when
    None) for C == 1, or C == 2 with a threshold; argmax otherwise (`unetlab.decision.class_map`)."""
    from .decision import class_map

    return class_map(probabilities, threshold)


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


def centre_crop(array: np.ndarray, size) -> np.ndarray:
    """The centre `size` (an int: a square; or (height, width)) of an (H, W, ...) array."""
    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    top, left = (array.shape[0] - height) // 2, (array.shape[1] - width) // 2
    return array[top:top + height, left:left + width]


PREDICTION_COLUMNS = ("image", "truth", "prediction", "overlay")
TILE_SIZE = 256  # a tile's longer side in a labelled grid (small tiles: the largest whole multiple up to it)
GAP = 2  # grey pixels between cells
HEADER_HEIGHT = 28  # the strip naming the columns
LABEL_WIDTH = 96  # the strip naming the rows, wider when a label needs it
FONT_SIZE = 16
_PAD, _STRIP, _GREY = 6, 235, 128


def prediction_grid(images, truths, predictions, num_classes: int) -> np.ndarray:
    """One row per image: image | truth | prediction | overlay, labelled with its Dice (`dice_label`).

    Images as decoded (any dtype, (H, W) or (H, W, C)) or floats in [0, 1]; truths and predictions
    as class ids (H, W) or (H, W, 1), of the image's size."""
    rows, labels = [], []
    for image, truth, prediction in zip(images, truths, predictions):
        image = np.asarray(image)
        image = image if image.ndim == 3 else image[..., None]
        truth, prediction = (np.asarray(ids).reshape(image.shape[:2]).astype(np.int64) for ids in (truth, prediction))
        rows.append([to_rgb(to_unit_range(image)), colorize(truth), colorize(prediction), overlay(image, prediction)])
        labels.append(dice_label(truth, prediction, num_classes))
    return labelled_grid(rows, PREDICTION_COLUMNS, labels)


def dice_label(truth: np.ndarray, prediction: np.ndarray, num_classes: int) -> str:
    """'dice 0.83': one image's Dice as `unetlab.evaluation` scores it (binary: class 1; K classes:
    the mean over classes 1..K-1). Truth pixels that are no class id (ignore_index) do not count."""
    from .evaluation import confusion_matrix, scores

    truth, prediction = np.asarray(truth).ravel(), np.asarray(prediction).ravel().astype(np.int64)
    keep = (truth >= 0) & (truth < max(num_classes, 2))  # ignore_index is never a class id
    confusion = confusion_matrix(truth[keep].astype(np.int64), prediction[keep], num_classes)
    return f"dice {scores(confusion)['dice']:.2f}"


def labelled_grid(rows: list[list[np.ndarray]], columns, row_labels: list[str] | None = None) -> np.ndarray:
    """Rows of RGB tiles under a header strip naming the columns and, given `row_labels`, a strip on
    the left naming each row. Each tile is scaled by `fit_tile` and centred in a cell of the largest
    tile's size; cells are `GAP` grey pixels apart."""
    from PIL import Image, ImageDraw

    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"Each row needs one tile per column {tuple(columns)}. "
                         f"Received: rows of {sorted({len(row) for row in rows})} tiles")
    tiles = [[fit_tile(np.asarray(tile, np.uint8)) for tile in row] for row in rows]
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_width(text: str) -> int:
        return int(measure.textlength(text, font=font)) + 2 * _PAD

    cell_height = max(tile.shape[0] for row in tiles for tile in row)
    cell_width = max([tile.shape[1] for row in tiles for tile in row] + [text_width(name) for name in columns])
    label_width = 0 if row_labels is None else max([LABEL_WIDTH] + [text_width(label) for label in row_labels])
    left, top = label_width + GAP if label_width else 0, HEADER_HEIGHT + GAP
    canvas = np.full((top + len(rows) * (cell_height + GAP) - GAP, left + len(columns) * (cell_width + GAP) - GAP, 3),
                     _GREY, np.uint8)
    canvas[:HEADER_HEIGHT] = _STRIP
    for r, row in enumerate(tiles):
        y = top + r * (cell_height + GAP)
        canvas[y:y + cell_height, :label_width] = _STRIP
        for c, tile in enumerate(row):
            tile_y = y + (cell_height - tile.shape[0]) // 2
            tile_x = left + c * (cell_width + GAP) + (cell_width - tile.shape[1]) // 2
            canvas[tile_y:tile_y + tile.shape[0], tile_x:tile_x + tile.shape[1]] = tile
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for c, name in enumerate(columns):
        _centred_text(draw, font, name, left + c * (cell_width + GAP) + cell_width / 2, HEADER_HEIGHT / 2)
    for r, label in enumerate(row_labels or []):
        _centred_text(draw, font, label, label_width / 2, top + r * (cell_height + GAP) + cell_height / 2)
    return np.asarray(picture)


def fit_tile(tile: np.ndarray, size: int = TILE_SIZE) -> np.ndarray:
    """An RGB tile with its longer side at up to `size` pixels, aspect kept: a smaller one enlarged by
    the largest whole factor (nearest neighbour: pixels stay sharp squares), a larger one shrunk
    (each output pixel the mean of the pixels it covers)."""
    longer = max(tile.shape[:2])
    if longer <= size:
        factor = size // longer
        return tile.repeat(factor, axis=0).repeat(factor, axis=1)
    from PIL import Image

    height, width = (max(1, round(side * size / longer)) for side in tile.shape[:2])
    return np.asarray(Image.fromarray(tile).resize((width, height), Image.Resampling.BOX))


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)  # Pillow >= 10.1 with FreeType: scalable Aileron
    except (ImportError, TypeError):
        return ImageFont.load_default()  # older or FreeType-less Pillow: the small bitmap font


def _centred_text(draw, font, text: str, x: float, y: float) -> None:
    """Centred on (x, y); vertically by the font's letter height, so texts side by side share a baseline."""
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    _, top, _, bottom = draw.textbbox((0, 0), "Ag", font=font)
    draw.text((round(x - (left + right) / 2), round(y - (top + bottom) / 2)), text, fill=(0, 0, 0), font=font)


def heatmap(values: np.ndarray) -> np.ndarray:
    """Values (H, W) -> uint8 RGB in matplotlib's viridis, 0 to the maximum (dark blue to yellow)."""
    from matplotlib import colormaps

    values = np.asarray(values, np.float32)
    scaled = values / max(float(values.max()), 1e-12)
    return (colormaps["viridis"](scaled)[..., :3] * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, classes: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A decoded image (any dtype) with its non-background classes tinted in their colours."""
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


def save_curves(curves: dict[str, list[tuple[float, float]]], path: str | Path, xlabel: str = "threshold") -> Path:
    """A line plot (PNG) of named curves of (x, value) points, each marked at its points: the challenge's
    scores against the threshold of the cell probability (errors: lower is better; V scores: higher)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    for name, points in curves.items():
        x, y = zip(*points)
        axes.plot(x, y, marker="o", label=name)
    axes.set(xlabel=xlabel, ylabel="score", ylim=(0, 1))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(str(path))
    return Path(path)
