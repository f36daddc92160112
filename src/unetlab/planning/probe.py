"""The planner's measurements on this device: peak memory and seconds per step of real training steps.

Memory is measured, not modelled. On a GPU it is TensorFlow's allocator peak (`get_memory_info`, reset
before each probe). On a CPU it is the process's peak resident set (VmHWM), reset before each probe through
`/proc/self/clear_refs` with freed heap returned to the system first, so a probe measures the whole training
process (runtime, data pipeline, model, activations, optimizer) as training will run it. Where the peak cannot
be reset (not Linux) it is the process's lifetime peak: an upper bound, so plans err small.

A CPU runtime keeps most of the memory a larger network took after it is freed (TensorFlow's and oneDNN's
caches: 1.4 of 2.4 GB here), so a probe after a larger one would read that too: `task=plan` measures each
candidate in a fresh process.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError

CPU_SHARE = 0.5  # the default memory budget on a CPU: half the memory this process may use
GPU_SHARE = 0.9  # on a GPU: 90% of its memory


@dataclass(frozen=True)
class Measurement:
    """One probe: the peak memory (bytes); seconds of the first training step (tracing included), of each later
    one, of an inference batch, and of saving the model (a checkpoint)."""

    peak_bytes: int
    seconds_per_step: float
    seconds_per_inference: float
    seconds_first_step: float = 0.0
    seconds_per_save: float = 0.0
    baseline_bytes: int = 0  # resident before the first step: runtime, data, the model's weights
    parameters: int = 0  # the model's: its gradients and optimizer state scale with these, not with the patch

    @property
    def out_of_memory(self) -> bool:
        return self.peak_bytes == OUT_OF_MEMORY.peak_bytes


OUT_OF_MEMORY = Measurement(peak_bytes=2**62, seconds_per_step=float("inf"), seconds_per_inference=float("inf"))


def device_memory() -> tuple[str, int, str]:
    """("gpu" or "cpu", its memory in bytes, a name): the first GPU TensorFlow sees, else this machine's memory
    (its cgroup limit where one is set)."""
    gpu = _gpu()
    if gpu is not None:
        return gpu
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_limit()
    return "cpu", min(total, limit) if limit else total, f"CPU, {os.cpu_count()} cores"


def default_memory_budget(kind: str, memory_bytes: int) -> int:
    """The budget when none is given: `CPU_SHARE` of a CPU's memory, `GPU_SHARE` of a GPU's."""
    return int(memory_bytes * (GPU_SHARE if kind == "gpu" else CPU_SHARE))


def measure(train_steps: Callable[[int], None], infer: Callable[[], None], *, steps: int = 3,
            save: Callable[[], None] | None = None, parameters: int = 0) -> Measurement:
    """Run `train_steps(1)` (tracing, first allocations) and again, then `train_steps(steps)` timed, `infer()` twice
    (the second timed) and `save()`, and read the peak memory over all of it."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1. Received: steps={steps}")
    reset_peak()
    baseline = read_peak()
    first = _seconds(train_steps, 1)
    train_steps(1)  # the second step still settles (allocator, thread pools): not timed
    per_step = _seconds(train_steps, steps) / steps
    infer()
    per_inference = _seconds(infer)
    per_save = _seconds(save) if save is not None else 0.0
    return Measurement(peak_bytes=read_peak(), seconds_per_step=per_step, seconds_per_inference=per_inference,
                       seconds_first_step=first, seconds_per_save=per_save, baseline_bytes=baseline,
                       parameters=parameters)


def _seconds(action: Callable, *args) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def process_seconds() -> float:
    """Seconds since this process started (0 where /proc does not say)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def reset_peak() -> None:
    """Start a new peak: freed memory returned to the system, then the peak reset (GPU stats, or VmHWM)."""
    gc.collect()
    if _gpu() is not None:
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("GPU:0")
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    except OSError:
        pass


def read_peak() -> int:
    """The peak since `reset_peak`, in bytes (module docstring)."""
    if _gpu() is not None:
        import tensorflow as tf

        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _gpu() -> tuple[str, int, str] | None:
    """The first GPU TensorFlow has loaded, if any, without importing TensorFlow; looked up once (every peak
    reset and read asks)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    if "gpu" not in _FOUND:
        _FOUND["gpu"] = _find_gpu(tf)
    return _FOUND["gpu"]


_FOUND: dict = {}


def _find_gpu(tf) -> tuple[str, int, str] | None:
    devices = tf.config.list_physical_devices("GPU")
    if not devices:
        return None
    details = tf.config.experimental.get_device_details(devices[0])
    import subprocess

    try:  # the total memory: nvidia-smi, as TensorFlow does not report it before allocating
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10).stdout
        total = int(out.split()[0]) * 2**20
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        total = 16 * 2**30
    return "gpu", total, details.get("device_name", "GPU")


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None
