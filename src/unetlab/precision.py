"""The compute precision a training uses: `trainer.precision=auto` picks mixed bfloat16 where this machine
multiplies bfloat16 matrices natively, float32 elsewhere.

Native bfloat16: an NVIDIA GPU of compute capability 8.0 or more (Ampere and later: A100, H100), or a
CPU with Intel AMX (the `amx_bf16` flag of /proc/cpuinfo: Xeon Sapphire Rapids and later), whose
matrix units oneDNN uses for TensorFlow's convolutions. Measured on a 2-core AMX Xeon (the U-Net,
filters 16, 128x128, batch 8, experiments/benchmarks/train_throughput.py): float32 35.3 img/s,
mixed_bfloat16 74.3. Without such units bfloat16 is
emulated and can be slower than float32. Mixed precision keeps the variables, the head and the losses
in float32.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_has_amx_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU flags list `amx_bf16` (Linux; False where /proc/cpuinfo cannot be read)."""
    try:
        return any(line.startswith("flags") and "amx_bf16" in line.split() for line in cpuinfo.open())
    except OSError:
        return False


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """The compute capability of each GPU the Keras backend sees (TensorFlow or JAX); [] for none."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        devices = [d for d in jax.devices() if d.platform == "gpu"]
        return [tuple(int(v) for v in str(getattr(d, "compute_capability", "0.0")).split(".")[:2]) for d in devices]
    import tensorflow as tf

    details = [tf.config.experimental.get_device_details(gpu) for gpu in tf.config.list_physical_devices("GPU")]
    return [tuple(detail.get("compute_capability", (0, 0))) for detail in details]


def resolve(choice: str, gpus: list[tuple[int, int]] | None = None, amx: bool | None = None) -> tuple[str, str]:
    """(the Keras dtype policy, why) for `trainer.precision=choice`: a named policy as it is; `auto`,
    mixed_bfloat16 on GPUs that all have compute capability >= 8.0 or, without GPUs, on a CPU with AMX,
    else float32. `gpus` and `amx` default to what this machine has."""
    if choice != "auto":
        return choice, "as configured"
    gpus = gpu_compute_capabilities() if gpus is None else gpus
    if gpus:
        if min(gpus) >= (8, 0):
            return "mixed_bfloat16", f"auto: the GPUs compute bfloat16 natively (compute capability {min(gpus)[0]}.{min(gpus)[1]})"
        return "float32", "auto: a GPU below compute capability 8.0 has no native bfloat16"
    if cpu_has_amx_bf16() if amx is None else amx:
        return "mixed_bfloat16", "auto: the CPU has AMX bfloat16 units"
    return "float32", "auto: no GPU, and the CPU has no AMX bfloat16 units"
