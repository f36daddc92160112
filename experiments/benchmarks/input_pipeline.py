"""Input-pipeline throughput on image/mask folders: the runner's tf.data pipeline vs the classic tutorial.

Prints images/s at 256x256 (batch 8) for
  (a) the runner's pipeline, no augmentation      (decode -> resize -> cache -> shuffle -> batch -> prefetch)
  (b) the runner's pipeline with augment=paper     (+ elastic deformation, rotation, shift, gray values;
      conf/augment/paper.yaml, composed as a run composes it)
  (c) Keras ImageDataGenerator.flow_from_directory (rescale only), the classic U-Net tutorial's loader,
and the targets: (a) >= 5x (c); (b) >= 20x the training img/s of the default model
(pass that figure with --train-images-per-second, from train_throughput.py).
For (a) and (b) the first pass (decoding every file) and the steady state (later passes, from
the cache, as every epoch after the first) are reported separately.

    python experiments/benchmarks/input_pipeline.py --root ../shared/data/isbi2012 --train-images-per-second 0.6
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def images_per_second(batches, count: int) -> float:
    """Pull batches until `count` images went by; images per second."""
    seen, start = 0, time.perf_counter()
    for images, *_ in batches:
        seen += len(images)
        if seen >= count:
            break
    return seen / (time.perf_counter() - start)


def augment_settings(name: str):
    """The AugmentConfig of `augment=NAME`, composed from the real conf/ as a run would get it."""
    from hydra import compose, initialize_config_module

    from runner import builders
    from runner.app import register
    from runner.settings import to_config

    register()
    with initialize_config_module(config_module="runner.conf", version_base="1.3"):
        return builders.augment_settings(to_config(compose("config", overrides=[f"augment={name}",
                                                                                 "output_dir=/tmp/bench"])))


def runner_pipeline(root: str, size: int, batch: int, augment: str, seed: int = 0):
    from unetlab.data import make_batches, make_folder_splits
    from unetlab.data.augment import make_augmenter

    splits = make_folder_splits(images=f"{root}/image", masks=f"{root}/label", image_size=size, channels=1,
                                num_classes=1, seed=seed, val_fraction=0.01)
    return make_batches(splits.train, batch, shuffle=True, seed=seed, repeat=True,
                        augment=make_augmenter(augment_settings(augment), seed)), splits.num_train


def tutorial_pipeline(root: str, size: int, batch: int, seed: int = 1):
    """The zhixuhao/unet `trainGenerator`: two flow_from_directory streams zipped, rescale only."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    common = dict(class_mode=None, color_mode="grayscale", target_size=(size, size), batch_size=batch, seed=seed)
    images = ImageDataGenerator(rescale=1 / 255).flow_from_directory(root, classes=["image"], **common)
    masks = ImageDataGenerator(rescale=1 / 255).flow_from_directory(root, classes=["label"], **common)
    return zip(images, masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/isbi2012", help="folder with image/ and label/")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=480, help="images timed per measurement")
    parser.add_argument("--train-images-per-second", type=float, default=None,
                        help="training img/s of the default model on this machine (train_throughput.py)")
    args = parser.parse_args()
    size, batch = args.image_size, args.batch_size
    print(f"{os.cpu_count()} CPUs; {args.root}; {size}x{size}, batch {batch}, {args.images} images per figure")

    rates = {}
    for name, augment in (("a", "none"), ("b", "paper")):
        batches, num_train = runner_pipeline(args.root, size, batch, augment)
        first = images_per_second(batches, num_train)  # decodes every file once, fills the cache
        rates[name] = images_per_second(batches, args.images)
        print(f"({name}) runner, augment={augment:5s}: first pass {first:8.1f} img/s, steady {rates[name]:8.1f} img/s",
              flush=True)
    rates["c"] = images_per_second(tutorial_pipeline(args.root, size, batch), args.images)
    print(f"(c) ImageDataGenerator.flow_from_directory (rescale only): {rates['c']:8.1f} img/s")

    ratio = rates["a"] / rates["c"]
    print(f"(a)/(c) = {ratio:.1f}x -> {'PASS' if ratio >= 5 else 'FAIL'} (target >= 5x)")
    if args.train_images_per_second:
        ratio = rates["b"] / args.train_images_per_second
        print(f"(b)/training = {ratio:.0f}x -> {'PASS' if ratio >= 20 else 'FAIL'} (target >= 20x)")


if __name__ == "__main__":
    main()
