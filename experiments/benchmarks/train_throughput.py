"""Training throughput: the runner's tf.data pipeline vs the same model fed in-memory tensors.

Measures steady-state training images/s of the default U-Net (depth 4, filters 32,
256x256, batch 4, 1 channel, 1 class) in one process, two ways:

  (a) runner    - `make_batches(splits.train, ...)` exactly as `task=train` builds it
                  (cache -> an endless stream of shuffled passes -> batch -> prefetch of synthetic data);
  (b) in-memory - the same images/masks materialised once as NumPy arrays, `fit(x, y)`.

Both models come from the real Hydra config through `runner.builders.build_model`
and `compile_model` (the runner's loss, metrics, optimizer and jit setting). Each is
warmed up by one short fit (tracing, and filling the pipeline cache), then timed for
`--steps` steps, `--repeats` times, alternating a/b. A step's time is taken between
consecutive `on_train_batch_end` calls, so it includes fetching the batch but not
fit's per-call start-up. Prints the median img/s of each, runner/in-memory, and PASS
when the runner is within 5% of in-memory.

    make benchmark   # full size: slow on CPU (extrapolated ~30+ min on 2 busy cores)
    python experiments/benchmarks/train_throughput.py --image-size 64 --steps 5 --repeats 1
    python experiments/benchmarks/train_throughput.py --model unetpp --batch-size 8   # a family of the zoo
    python experiments/benchmarks/train_throughput.py --image-size 128 --filters 16 --batch-size 8 --precision auto
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

from unetlab.names import PRECISIONS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET = 0.95  # runner img/s must be at least 95% of in-memory img/s
FAMILIES = {  # --model: the config overrides that build each family of the U-Net zoo
    "unet": [], "resunet": ["model.block=residual"], "attention_unet": ["model.attention=true"],
    "unetpp": ["model=unetpp"], "resnet50_unet": ["model=encoder_unet", "model.encoder=resnet50"],
    "efficientnetb0_unet": ["model=encoder_unet", "model.encoder=efficientnetb0"],
    "mobilenetv2_unet": ["model=encoder_unet", "model.encoder=mobilenetv2"],
    "nnunet": ["model=nnunet"],  # 6 stages, 32-512 filters, deep supervision: nnU-Net's 2D network as planned
}
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")  # fit(dataset) warns; the runner's too


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(FAMILIES), default="unet", help="the U-Net family to train")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each, alternating a/b")
    parser.add_argument("--num-train", type=int, default=64, help="synthetic training images (cached)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="trainer.precision (auto: bfloat16 where the hardware has it natively)")
    return parser.parse_args()


def compose_config(args: argparse.Namespace):
    """The runner's validated Config, composed from the real conf/ with benchmark overrides."""
    from hydra import compose, initialize_config_module

    from runner.app import register
    from runner.settings import to_config

    register()
    family = FAMILIES[args.model]
    size = ([] if "model=encoder_unet" in family else [f"model.filters={args.filters}"] if "model=nnunet" in family
            else [f"model.depth={args.depth}", f"model.filters={args.filters}"])
    overrides = [*FAMILIES[args.model], f"data.image_size={args.image_size}", f"data.num_train={args.num_train}",
                 "data.num_val=4", *size,
                 f"trainer.batch_size={args.batch_size}", f"trainer.steps_per_epoch={args.steps}",
                 f"trainer.precision={args.precision}",
                 "trainer.verbose=0", "output_dir=/tmp/bench"]
    with initialize_config_module(config_module="runner.conf", version_base="1.3"):
        return to_config(compose("config", overrides=overrides))


def timed_fit(model, images_per_step: int, *args, **kwargs) -> float:
    """One epoch of `fit`; img/s between the first and the last `on_train_batch_end`."""
    import keras

    times = []
    clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: times.append(time.perf_counter()))
    model.fit(*args, epochs=1, verbose=0, callbacks=[clock], **kwargs)
    return images_per_step * (len(times) - 1) / (times[-1] - times[0])


def main() -> None:
    args = parse_args()
    if args.steps < 2 or args.repeats < 1:
        raise SystemExit("--steps must be >= 2 (timing runs from the first step's end) and --repeats >= 1")
    import keras
    import numpy as np
    import tensorflow as tf

    from runner import builders

    config = compose_config(args)
    data, trainer = config.data, config.trainer
    print(f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0))} usable), GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}")
    print(f"model: {args.model} ({config.model.run_name()}), "
          f"{data.image_size}x{data.image_size}x{data.channels}, {data.num_classes} class(es); loss "
          f"{config.loss.name}, optimizer {config.optimizer.name}; batch {trainer.batch_size}, "
          f"{args.steps} steps x {args.repeats} repeats, {data.num_train} training images")

    keras.utils.set_random_seed(config.seed)
    from unetlab.precision import resolve

    policy, why = resolve(trainer.precision.value)
    keras.mixed_precision.set_dtype_policy(policy)
    print(f"precision: {policy} ({why})")
    splits = builders.make_splits(config)
    warmup = -(-data.num_train // trainer.batch_size) + 2  # one full pass: the cache is filled before timing
    models = {}
    for name in ("runner", "in-memory"):
        models[name] = builders.build_model(config)
        builders.compile_model(models[name], config, total_steps=warmup + args.repeats * args.steps)
    label_size = builders.label_size(models["runner"])
    batches = builders.make_training_batches(config, splits, trainer.batch_size, label_size=label_size)

    # The same samples as arrays, repeated to cover the longest fit (arrays are not repeated by Keras).
    images, masks = (np.stack(a) for a in zip(*((i.numpy(), m.numpy()) for i, m in splits.train)))
    if label_size is not None:
        offset = (masks.shape[1] - label_size) // 2
        masks = masks[:, offset:offset + label_size, offset:offset + label_size]
    order = np.arange(max(warmup, args.steps) * trainer.batch_size) % len(images)
    x, y = images[order], masks[order]

    size = trainer.batch_size
    feeds = {"runner": lambda steps: timed_fit(models["runner"], size, batches, steps_per_epoch=steps),
             "in-memory": lambda steps: timed_fit(models["in-memory"], size, x, y, batch_size=size,
                                                  steps_per_epoch=steps)}  # shuffled by Keras, like the runner
    for name, feed in feeds.items():
        start = time.perf_counter()
        feed(warmup)
        print(f"warm-up {name:9s}: {warmup} steps in {time.perf_counter() - start:.1f} s", flush=True)

    rates = {name: [] for name in feeds}
    for repeat in range(args.repeats):
        for name, feed in (feeds.items() if repeat % 2 == 0 else reversed(feeds.items())):
            rates[name].append(feed(args.steps))
            print(f"repeat {repeat + 1}/{args.repeats} {name:9s}: {rates[name][-1]:7.2f} img/s", flush=True)

    runner, memory = statistics.median(rates["runner"]), statistics.median(rates["in-memory"])
    ratio = runner / memory
    print(f"median runner    : {runner:7.2f} img/s")
    print(f"median in-memory : {memory:7.2f} img/s")
    print(f"ratio runner/in-memory: {ratio:.3f} -> {'PASS' if ratio >= TARGET else 'FAIL'} "
          f"(target >= {TARGET:.2f})")


if __name__ == "__main__":
    main()
