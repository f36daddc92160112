"""Sample data shared by the library tests: image files on disk, datasets as arrays, random predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save(path: Path, array) -> str:
    """Write `array` with tifffile (.tif/.tiff) or Pillow (everything else), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        if array.ndim == 3 and array.shape[-1] != 3:  # N channels, not a stack of pages
            tifffile.imwrite(path, array, photometric="minisblack", planarconfig="contig")
        else:
            tifffile.imwrite(path, array)
    else:
        Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array).save(path)
    return str(path)


def as_arrays(dataset):
    """(images, masks) of a dataset of (image, mask) pairs, each stacked into one array."""
    images, masks = zip(*[(image.numpy(), mask.numpy()) for image, mask in dataset])
    return np.stack(images), np.stack(masks)


def make_folder(root: Path, count: int = 4, size: int = 20, mask_values=(0, 255), channels: int = 1):
    """root/images/s<i>.png (random pixels) and root/masks/s<i>.png (random `mask_values`)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        save(root / "images" / f"s{i}.png", rng.integers(0, 256, (size, size, channels), dtype=np.uint8))
        save(root / "masks" / f"s{i}.png", rng.choice(np.array(mask_values, np.uint8), size=(size, size, 1)))
    return root / "images", root / "masks"


def make_dataset(root: Path, masks: dict, images: dict | None = None, suffix: str = ".png"):
    """root/images/NAME<suffix> (8x6 grey unless given in `images`) and root/masks/NAME.png for each named mask."""
    for name, mask in masks.items():
        mask = np.asarray(mask, dtype=np.uint8)
        image = images[name] if images and name in images else np.full(mask.shape[:2], 100, np.uint8)
        save(root / "images" / f"{name}{suffix}", image)
        save(root / "masks" / f"{name}.png", mask)
    return root / "images", root / "masks"


def three_class_mask(shape=(8, 6)):
    """Half class 0, a quarter class 1, a quarter class 2."""
    mask = np.zeros(shape, np.uint8)
    mask[shape[0] // 2:, : shape[1] // 2] = 1
    mask[shape[0] // 2:, shape[1] // 2:] = 2
    return mask


# --- predictions -----------------------------------------------------------------------------------

RNG = np.random.default_rng(0)
IGNORE = 255


def random_case(num_classes, batch=3, size=8):
    """Random class ids (batch, size, size, 1) and probabilities from a sigmoid (K=1) or softmax head."""
    truth = RNG.integers(0, max(num_classes, 2), size=(batch, size, size, 1)).astype(np.float32)
    if num_classes == 1:
        probabilities = RNG.uniform(0.01, 0.99, size=(batch, size, size, 1)).astype(np.float32)
    else:
        logits = RNG.normal(size=(batch, size, size, num_classes))
        probabilities = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    return truth, probabilities


def with_ignored(truth, fraction=0.25):
    """`truth` with a random `fraction` of its pixels set to IGNORE, and the mask of scored pixels."""
    ignored = RNG.uniform(size=truth.shape) < fraction
    ignored[0] = True  # one image entirely ignored: it must contribute 0, not NaN
    return np.where(ignored, IGNORE, truth).astype(np.float32), ~ignored


def one_hot(truth, channels):
    """Class ids (..., 1) as one-hot (..., channels); kept as they are for one channel (a sigmoid head)."""
    if channels == 1:
        return truth
    return np.eye(channels, dtype=np.float32)[truth[..., 0].astype(int)]
