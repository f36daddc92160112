"""Epoch throughput: `python -m runner` on ISBI 2012 vs the same model fit on in-memory arrays.

Measures training images/s over whole epochs (training steps, validation, and everything the
runner does per epoch: metrics logged to MLflow, checkpoints captured, written and uploaded) of
the U-Net on the 24 ISBI 2012 slices (data=isbi2012, batch 4), three ways:

  (a) runner        - `python -m runner data=isbi2012 ...` in a subprocess, in a temporary
                      directory (SQLite store, ./mlruns artifacts there); an epoch's time is
                      the gap between the MLflow timestamps of the `loss` metric at steps e-1, e;
  (b) deterministic - the same with trainer.deterministic=true (what op determinism costs);
  (c) in-memory     - the model built and compiled by runner.builders from the same composed
                      Config, `fit` on NumPy arrays of splits.train / splits.val; an epoch's
                      time is the gap between consecutive `on_epoch_end` calls.

Epoch 1 (tracing, warm-up) is left out: images/s = training images / epoch time over epochs
2..N (median and mean). With --profile each runner epoch's wall time is set beside the time
its "epoch E/N 12.3s" log line reports (EpochSummary: steps + validation); the difference is
the time spent outside them (the previous epoch's MLflow logging and checkpoint capture;
the log line has 0.1 s resolution), plus the time before epoch 1 and after the last epoch.

    python experiments/benchmarks/epoch_throughput.py   # full size: slow on CPU
    python experiments/benchmarks/epoch_throughput.py --image-size 64 --filters 8 --epochs 3 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading data/split.json

REPO = Path(__file__).resolve().parents[2]
BATCH_SIZE = 4
MODES = {"a": "runner", "b": "runner deterministic", "c": "in-memory"}
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ ([\d.]+)s lr=")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data" / "isbi2012")
    parser.add_argument("--only", default="a,b,c", help="modes to run, comma-separated: a,b,c")
    parser.add_argument("--profile", action="store_true", help="where each runner epoch's time goes")
    args = parser.parse_args()
    args.only = [mode.strip() for mode in args.only.split(",") if mode.strip()]
    if args.epochs < 2 or not args.only or set(args.only) - set(MODES):
        parser.error("--epochs must be >= 2 (epoch 1 is left out) and --only a subset of a,b,c")
    args.data_root = args.data_root.resolve()
    return args


def overrides(args: argparse.Namespace) -> list[str]:
    """The config both the runner and the in-memory fit are composed from."""
    return ["data=isbi2012", f"data.root={args.data_root}", f"data.image_size={args.image_size}",
            f"model.filters={args.filters}", f"trainer.batch_size={BATCH_SIZE}", f"trainer.epochs={args.epochs}"]


def rates(images: int, seconds: list[float]) -> tuple[float, float]:
    """Median and mean images/s of epochs taking `seconds` each."""
    per_epoch = [images / s for s in seconds]
    return statistics.median(per_epoch), statistics.mean(per_epoch)


def run_runner(args: argparse.Namespace, deterministic: bool) -> dict:
    """Train with `python -m runner` in a temporary directory; epoch times from MLflow timestamps."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="epoch_throughput_") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        command = [sys.executable, "-m", "runner", *overrides(args), f"tracking.uri={uri}",
                   "tracking.log_predictions=false", f"output_dir={tmp}/outputs",
                   f"trainer.deterministic={str(deterministic).lower()}"]
        started = time.time()
        done = subprocess.run(command, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ended = time.time()
        if done.returncode != 0:
            raise SystemExit(f"runner exited {done.returncode}:\n{' '.join(command)}\n{done.stdout[-4000:]}")
        client = mlflow.MlflowClient(tracking_uri=uri)
        (run,) = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])
        history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
        stamps = [m.timestamp / 1000 for m in history]
        split = Path(client.download_artifacts(run.info.run_id, "data/split.json", tmp)).read_text()
    logged = {int(e): float(s) for e, s in EPOCH_LINE.findall(done.stdout)}
    return {"images": len(json.loads(split)["train"]), "seconds": [b - a for a, b in zip(stamps, stamps[1:])],
            "logged": logged, "startup": stamps[0] - started - logged.get(1, 0.0), "teardown": ended - stamps[-1]}


def run_in_memory(args: argparse.Namespace) -> dict:
    """The same Config's model, compiled by runner.builders, fit on NumPy arrays."""
    import keras
    import numpy as np
    from hydra import compose, initialize_config_module

    from runner import builders
    from runner.app import register
    from runner.settings import to_config

    register()
    with initialize_config_module(config_module="runner.conf", version_base="1.3"):
        config = to_config(compose("config", overrides=overrides(args) + ["output_dir=/tmp/bench"]))
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_dtype_policy(config.trainer.precision.value)
    splits = builders.make_splits(config)
    model = builders.build_model(config)
    builders.compile_model(model, config, total_steps=args.epochs * builders.steps_per_epoch(config, splits))
    label_size = builders.label_size(model)

    def arrays(dataset):
        images, masks = (np.stack(a) for a in zip(*((i.numpy(), m.numpy()) for i, m in dataset)))
        if label_size is not None:  # valid padding: the centre of the mask, as make_batches crops it
            offset = (masks.shape[1] - label_size) // 2
            masks = masks[:, offset:offset + label_size, offset:offset + label_size]
        return images, masks

    (x, y), validation = arrays(splits.train), arrays(splits.val)
    ends = []
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    model.fit(x, y, validation_data=validation, batch_size=BATCH_SIZE, epochs=args.epochs, shuffle=True,
              verbose=0, callbacks=[clock])
    return {"images": len(x), "seconds": [b - a for a, b in zip(ends, ends[1:])]}


def print_profile(name: str, result: dict) -> None:
    """Each runner epoch: wall time (MLflow timestamps), steps + validation (its log line), the gap."""
    print(f"profile {name}: before epoch 1 (start-up, data check, build, compile) {result['startup']:.1f} s, "
          f"epoch 1 {result['logged'].get(1, float('nan')):.1f} s, after the last epoch {result['teardown']:.1f} s")
    print("  epoch   wall s   steps+val s (log)   gap s")
    for epoch, wall in enumerate(result["seconds"], start=2):
        logged = result["logged"].get(epoch, float("nan"))
        print(f"  {epoch:5d} {wall:8.2f} {logged:13.1f} {wall - logged:13.2f}")


def main() -> None:
    args = parse_args()
    import keras
    import mlflow
    import tensorflow as tf

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, MLflow {mlflow.__version__}, "
          f"Python {platform.python_version()}")
    print(f"U-Net filters {args.filters}, ISBI 2012 {args.data_root} at {args.image_size}x{args.image_size}, "
          f"batch {BATCH_SIZE}, {args.epochs} epochs (img/s over epochs 2..{args.epochs})", flush=True)

    results = {}
    for mode in args.only:
        name = MODES[mode]
        results[name] = run_in_memory(args) if mode == "c" else run_runner(args, deterministic=mode == "b")
        median, mean = rates(results[name]["images"], results[name]["seconds"])
        epochs = " ".join(f"{s:.2f}" for s in results[name]["seconds"])
        print(f"{name:20s}: {median:7.2f} img/s median, {mean:7.2f} mean ({results[name]['images']} images; "
              f"epoch s: {epochs})", flush=True)

    median = {name: rates(r["images"], r["seconds"])[0] for name, r in results.items()}
    if "runner" in median and "in-memory" in median:
        print(f"ratio runner/in-memory: {median['runner'] / median['in-memory']:.3f}")
    if "runner" in median and "runner deterministic" in median:
        print(f"ratio deterministic/non-deterministic: {median['runner deterministic'] / median['runner']:.3f}")
    if args.profile:
        for name, result in results.items():
            if "logged" in result:
                print_profile(name, result)


if __name__ == "__main__":
    main()
