"""Helpers shared by the tests: paths, the tiny config, and running `python -m runner`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def run_runner(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m runner ARGS` in a subprocess, as a user would start it."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
