"""Helpers shared by the tests: paths, the tiny config, and running `python -m runner`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# A model and dataset small enough to train two epochs in seconds. Eager: tracing a
# tf.function costs ~5 s per model here, far more than the steps themselves; the module
# fixture of test_train.py trains in graph mode.
TINY = [
    "trainer.run_eagerly=true",
    "data.image_size=32",
    "data.num_train=8",
    "data.num_val=4",
    "model.depth=2",
    "model.filters=4",
    "trainer.epochs=2",
    "trainer.batch_size=4",
    "trainer.verbose=0",
    "tracking.num_predictions=2",
]


def group_options() -> list[tuple[str, str]]:
    """(group, option) for every YAML option of every config group that has a schema."""
    from importlib import resources

    from runner.schema import SCHEMAS

    conf = resources.files("runner.conf")
    return [(group, option.name[:-5]) for group in SCHEMAS
            for option in sorted((conf / group).iterdir(), key=lambda p: p.name) if option.name.endswith(".yaml")]


def run_runner(*args: str, cwd: Path, timeout: float = 300, backend: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m runner ARGS` in a subprocess, as a user would start it (under KERAS_BACKEND=`backend`,
    with `env` added to the environment)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **({"KERAS_BACKEND": backend} if backend else {}), **(env or {})}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def shapes_dataset(root: Path, count: int, size: tuple[int, int]) -> tuple[Path, Path]:
    """Bright discs on a dark background: images and 0/255 masks."""
    rng = np.random.default_rng(len(root.name))
    rows, cols = np.mgrid[: size[0], : size[1]]
    for i in range(count):
        cy, cx, r = rng.integers(8, size[0] - 8), rng.integers(8, size[1] - 8), rng.integers(4, 9)
        mask = ((rows - cy) ** 2 + (cols - cx) ** 2 <= r**2).astype(np.uint8) * 255
        image = np.clip(40 + 0.6 * mask + rng.normal(0, 10, size), 0, 255).astype(np.uint8)
        write_png(root / "images" / f"s{i}.png", image)
        write_png(root / "masks" / f"s{i}.png", mask)
    return root / "images", root / "masks"


def write_pairs(root: Path, count: int = 6, size: int = 40) -> tuple[Path, Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[rng.integers(0, size - 12):, rng.integers(0, size - 12):][:10, :10] = 255
        Image.fromarray(np.clip(60 + 0.5 * mask + rng.normal(0, 8, mask.shape), 0, 255).astype(np.uint8)).save(
            root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root / "images", root / "masks"
