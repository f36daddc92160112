"""Augmentation throughput: `unetlab.data.augment.augment_pair` in graph mode, one pair at a time.

    python experiments/benchmarks/augment_throughput.py [--pairs 300] [--volumes 50]

With the U-Net paper's warps (rotation 15, shift 0.1, elastic 3x3 grid of 10 px, flips and quarter turns):
pairs/s of a 128x128 image and mask, and volumes/s of a 32x64x64 volume and mask (trilinear image,
nearest-neighbour mask), after one traced warm-up call each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from unetlab.data.augment import AugmentConfig, augment_pair

PAPER_WARPS = AugmentConfig(rotation=15.0, shift=0.1, elastic_grid=3, elastic_sigma=10.0, flip=True, rotate90=True)


def pairs_per_second(shape: tuple[int, ...], calls: int) -> float:
    """Pairs of `shape` (spatial..., 1) augmented per second by one traced function, keyed by the call."""
    rng = np.random.default_rng(0)
    image = tf.constant(rng.random(shape, np.float32))
    mask = tf.constant((rng.random(shape) > 0.5).astype(np.float32))
    run = tf.function(lambda key: augment_pair(image, mask, tf.stack([tf.constant(0, tf.int64), key]), PAPER_WARPS))
    run(tf.constant(0, tf.int64))  # tracing
    start = time.perf_counter()
    for key in range(calls):
        run(tf.constant(key, tf.int64))
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="2D pairs to time")
    parser.add_argument("--volumes", type=int, default=50, help="volumes to time")
    args = parser.parse_args()
    print(f"2D 128x128: {pairs_per_second((128, 128, 1), args.pairs):.1f} pairs/s")
    print(f"3D 32x64x64: {pairs_per_second((32, 64, 64, 1), args.volumes):.1f} volumes/s")


if __name__ == "__main__":
    main()
