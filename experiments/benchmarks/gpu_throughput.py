"""GPU training throughput: images/s, compile time, peak memory and achieved TFLOP/s of three U-Nets.

Trains on in-memory tensors (random images and masks, batch 8 by default), for each setting and
each precision (float32, mixed_bfloat16, mixed_float16 via `keras.mixed_precision.set_dtype_policy`;
the model's head, losses and metrics stay float32):

  classic256 - the classic Keras U-Net (same padding, nearest upsampling, sigmoid head), 256x256, filters 32,
               loss bce_dice, Adam;
  classic512 - the same network at 512x512, filters 64;
  paper572   - the paper's network (experiments/unet_paper.yaml): valid padding, 2x2 up-convolutions,
               dropout 0.5, 2-class softmax, 572x572 -> 388x388, filters 64, loss ce, SGD momentum 0.99.

Each (setting, precision) builds and compiles a fresh model (`jit_compile` is Keras's default, "auto"),
times a first `fit` of `--warmup` steps (the "compile s" column: tracing and XLA compilation, plus those
steps' own run time, small on a GPU), then one of `--steps` steps, timed between the first and the last
`on_train_batch_end` (each waits for its step's loss, so the time is the device's, not the dispatch's).
Batches are sliced from NumPy arrays, so each step includes copying its batch to the device. Prints one line per
(setting, precision): images/s, ms/step, compile s, peak device memory, TFLOP/s and % of `--peak-tflops`.

Training FLOPs per image are 3 x the forward convolutions' 2 x MACs (backward = 2 x forward), counted
from the built model's layers: a Conv2D does out_H x out_W x Cout x kh x kw x Cin MACs, a Conv2DTranspose
in_H x in_W x Cin x kh x kw x Cout (each input pixel is scattered once through the kernel; counting it
on the output side, as for a Conv2D, overcounts a stride-2 2x2 up-convolution 4x). Figures: 83.5 GFLOP
(classic256), 1,335 (classic512), 903 (paper572; XLA's cost analysis of the forward pass gives 301 x 3).

Peak memory is JAX's `peak_bytes_in_use` of device 0 (TensorFlow: `get_memory_info(...)["peak"]`), "n/a"
on CPU. JAX cannot reset it, so under JAX it is the process's high-water mark so far: settings run in the
order given, run one setting per process (`--settings paper572`) for exact per-setting figures.

Running on a GPU machine that has JAX but no TensorFlow
-------------------------------------------------------
Under KERAS_BACKEND=jax nothing this script imports pulls TensorFlow (tests/test_experiments/
test_gpu_throughput.py runs it with TensorFlow made unimportable). On the GPU machine, next to
its CUDA-enabled JAX (e.g. `pip install "jax[cuda12]"`), install Keras and its pure-Python
dependencies from wheels, and put the library on the path without its declared dependencies:

    pip install keras namex optree absl-py rich h5py ml-dtypes packaging numpy
    export PYTHONPATH=src           # or: pip install --no-deps -e .  (its dependencies pull TensorFlow)
    KERAS_BACKEND=jax python experiments/benchmarks/gpu_throughput.py
    KERAS_BACKEND=jax python experiments/benchmarks/gpu_throughput.py --settings paper572 \\
        --precisions mixed_bfloat16 --steps 50 --peak-tflops 989

`--peak-tflops` is the device's dense peak for the fraction column (989: H100/H200 SXM dense bf16;
use ~495 for their TF32, 67 for FP32). `--tiny` is a CPU smoke run: small images and filters, batch 2,
2 steps, in seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One network and its training recipe; the fields feed `build_unet`, `build_loss`, `build_optimizer`."""

    image_size: int
    filters: int
    padding: str = "same"
    upsampling: str = "nearest"
    num_classes: int = 1
    dropout: float = 0.0
    depth: int = 4
    loss: str = "bce_dice"
    optimizer: str = "adam"
    lr: float = 3e-4
    optimizer_params: tuple = ()

    def build_model(self):
        from unetlab.models.unet import build_unet

        return build_unet((self.image_size, self.image_size, 1), self.num_classes, depth=self.depth,
                          filters=self.filters, dropout=self.dropout, padding=self.padding,
                          upsampling=self.upsampling)


SETTINGS = {
    "classic256": Setting(image_size=256, filters=32),
    "classic512": Setting(image_size=512, filters=64),
    "paper572": Setting(image_size=572, filters=64, padding="valid", upsampling="transpose", num_classes=2,
                        dropout=0.5, loss="ce", optimizer="sgd", lr=0.01, optimizer_params=(("momentum", 0.99),)),
}
# --tiny: the same networks, small enough for a CPU smoke run (188 is the smallest valid-padding size at depth 4).
TINY = {"classic256": dict(image_size=32, filters=4), "classic512": dict(image_size=64, filters=4),
        "paper572": dict(image_size=188, filters=4)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per (setting, precision)")
    parser.add_argument("--warmup", type=int, default=3, help="steps of the first (compiling) fit")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="device peak TFLOP/s for the fraction column (989: H100/H200 dense bf16)")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: small sizes and filters, batch 2, 2 steps")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.warmup, args.batch = 2, 1, 2
    if args.steps < 2 or args.warmup < 1 or args.batch < 1:
        parser.error("--steps must be >= 2 (timing runs from the first step's end), --warmup and --batch >= 1")
    return args


def conv_macs(model) -> int:
    """Multiply-accumulates of one image's forward pass through the model's Conv2D/Conv2DTranspose layers."""
    import keras

    total = 0
    for layer in model.layers:
        kh, kw = getattr(layer, "kernel_size", (0, 0))
        if isinstance(layer, keras.layers.Conv2DTranspose):  # every input pixel meets the whole kernel once
            _, height, width, channels_in = layer.input.shape
            total += height * width * channels_in * kh * kw * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):  # every output pixel is one kernel-sized dot product
            _, height, width, channels_out = layer.output.shape
            total += height * width * channels_out * kh * kw * layer.input.shape[-1] // layer.groups
    return total


def training_flops_per_image(model) -> float:
    """About 3 x the forward convolutions' 2 x MACs (the backward pass costs twice the forward)."""
    return 3 * 2 * conv_macs(model)


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


def device_lines() -> list[str]:
    """Backend, devices and versions, without importing a framework the backend does not need."""
    import keras

    backend = keras.backend.backend()
    lines = [f"backend: {backend}; Keras {keras.__version__}, Python {platform.python_version()}, "
             f"{platform.machine()} {platform.system()}, {len(os.sched_getaffinity(0))} usable CPUs"]
    if backend == "jax":
        import jax

        devices = ", ".join(f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices())
        lines.append(f"JAX {jax.__version__}; devices: {devices}")
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        lines.append(f"TensorFlow {tf.__version__}; devices: {[d.name for d in gpus] or 'CPU only'}")
    elif backend == "torch":
        import torch

        lines.append(f"torch {torch.__version__}; devices: "
                     f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only'}")
    return lines


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on the first accelerator, or None where the backend does not say (CPU)."""
    backend = keras_backend()
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats()
        return stats.get("peak_bytes_in_use") if stats else None
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] if tf.config.list_physical_devices("GPU") \
            else None
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return None


def reset_peak_memory() -> None:
    """Start a fresh peak where the backend can (TensorFlow, torch); JAX keeps its process-wide peak."""
    backend = keras_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


def make_data(setting: Setting, output_size: int, count: int):
    """`count` random images and masks (class ids, at the model's output size), as NumPy arrays."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.random((count, setting.image_size, setting.image_size, 1), dtype=np.float32)
    masks = rng.integers(0, max(setting.num_classes, 2), (count, output_size, output_size, 1)).astype(np.float32)
    return images, masks


def measure(setting: Setting, precision: str, args: argparse.Namespace) -> dict:
    """Build, compile and train one model; its compile time, images/s, ms/step and peak memory."""
    import keras

    from unetlab.losses import build_loss
    from unetlab.metrics import build_metrics
    from unetlab.optim import build_optimizer

    keras.backend.clear_session()  # no keras.utils.set_random_seed: it imports TensorFlow wherever it is installed
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        model = setting.build_model()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    model.compile(optimizer=build_optimizer(setting.optimizer, setting.lr, **dict(setting.optimizer_params)),
                  loss=build_loss(setting.loss), metrics=build_metrics(setting.num_classes))
    reset_peak_memory()
    x, y = make_data(setting, model.output_shape[1], args.batch * max(args.steps, args.warmup))

    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch, steps_per_epoch=args.warmup, epochs=1, shuffle=False, verbose=0)
    compile_seconds = time.perf_counter() - start

    times: list[float] = []  # the callback gets Python floats: each step has finished on the device
    clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: times.append(time.perf_counter()))
    model.fit(x, y, batch_size=args.batch, steps_per_epoch=args.steps, epochs=1, shuffle=False, verbose=0,
              callbacks=[clock])
    seconds_per_step = (times[-1] - times[0]) / (len(times) - 1)
    return {"flops": training_flops_per_image(model), "images_per_second": args.batch / seconds_per_step,
            "ms_per_step": 1000 * seconds_per_step, "compile_seconds": compile_seconds,
            "peak_bytes": peak_memory_bytes()}


def table_line(name: str, precision: str, result: dict, peak_tflops: float) -> str:
    tflops = result["flops"] * result["images_per_second"] / 1e12
    memory = "n/a" if result["peak_bytes"] is None else f"{result['peak_bytes'] / 2**30:.2f} GiB"
    return (f"{name:10s} {precision:14s} {result['images_per_second']:9.2f} {result['ms_per_step']:9.1f} "
            f"{result['compile_seconds']:9.1f} {memory:>10s} {tflops:8.3f} {100 * tflops / peak_tflops:7.2f}%")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for line in device_lines():
        print(line)
    settings = {name: dataclasses.replace(SETTINGS[name], **(TINY[name] if args.tiny else {}))
                for name in args.settings}
    print(f"batch {args.batch}, {args.warmup} warm-up (compile) steps, {args.steps} timed steps; "
          f"peak {args.peak_tflops:g} TFLOP/s{'; --tiny sizes' if args.tiny else ''}")
    if keras_backend() == "jax" and peak_memory_bytes() is not None:
        print("peak mem: JAX's high-water mark since the process started (one setting and precision per "
              "process for exact figures)")
    for name, setting in settings.items():
        flops = training_flops_per_image(setting.build_model())
        print(f"{name}: {setting.image_size}x{setting.image_size}, filters {setting.filters}, padding "
              f"{setting.padding}, {setting.num_classes} class(es), loss {setting.loss}: "
              f"{flops / 1e9:,.4g} GFLOP per training image")
    print(f"{'setting':10s} {'precision':14s} {'images/s':>9s} {'ms/step':>9s} {'compile s':>9s} "
          f"{'peak mem':>10s} {'TFLOP/s':>8s} {'of peak':>8s}", flush=True)
    for name, setting in settings.items():
        for precision in args.precisions:
            print(table_line(name, precision, measure(setting, precision, args), args.peak_tflops), flush=True)


if __name__ == "__main__":
    main()
