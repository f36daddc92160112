"""3D benchmarks: training patches/s of the 3D U-Net (Keras, and PyTorch side by side), preprocessing volumes/s,
and a CT-like dataset larger than a memory limit.

    python experiments/benchmarks/volume_throughput.py      # keras: depth 4, filters 16, 96^3, batch 2
    /tmp/torchvenv/bin/python experiments/benchmarks/volume_throughput.py --torch   # keras (run by .venv), torch, ratio
    python experiments/benchmarks/volume_throughput.py --preprocess /tmp/bench_ct/Dataset101_CTLike
    python experiments/benchmarks/volume_throughput.py --big /tmp/big --cases 32 --shape 128 384 384

Training: `--warmup` untimed steps, then the mean of `--steps` `train_on_batch` steps on one random batch in memory,
the same arrays for both. Keras: `build_unet`, Adam, `build_loss("bce_dice")`, no metrics, Keras' jit_compile.
PyTorch (not a unetlab dependency; `--torch` never imports unetlab, the default mode never imports torch): the
same network written out (two 3x3x3 convolutions + ReLU per level, 2x2x2 max pooling, nearest upsampling, skip
first in the concatenation, filters * 2**level channels, 1x1x1 sigmoid head), Adam, BCE + soft Dice (smooth 1).
Preprocessing: the runner's `data=nnunet` path (fingerprint, plan, volume cache) into a temporary folder.
`--big`: uncompressed NIfTI cases of one shape at 1 mm (no resampling), to train under a memory limit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=96, help="cubic training patch")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--torch", action="store_true", help="also the network in PyTorch (run by a Python with torch)")
    parser.add_argument("--keras-python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="--torch: the Python that measures keras (the project's venv)")
    parser.add_argument("--preprocess", type=Path, metavar="DATASET_ROOT", help="time preprocessing of this dataset")
    parser.add_argument("--big", type=Path, metavar="OUT", help="write a large CT-like nnU-Net dataset under OUT")
    parser.add_argument("--cases", type=int, default=12, help="--big: cases")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256), metavar=("Z", "Y", "X"), help="--big")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def random_batch(args) -> tuple[np.ndarray, np.ndarray]:
    """(images, masks), (batch, D, H, W, 1) float32, the same for every framework."""
    rng = np.random.default_rng(args.seed)
    shape = (args.batch_size, *[args.patch] * 3, 1)
    return rng.standard_normal(shape, dtype=np.float32), (rng.random(shape) < 0.5).astype(np.float32)


def report(framework: str, params: int, step, args) -> float:
    """Run `step` warmup + steps times; print and return patches/s over the timed steps."""
    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    rate = args.batch_size / seconds
    print(f"{framework} 3D U-Net depth={args.depth} filters={args.filters} ({params} params): {rate:.2f} patches/s "
          f"({seconds:.2f} s/step) at {args.patch}^3 batch {args.batch_size}", flush=True)
    return rate


def keras_rate(args) -> float:
    import keras

    from unetlab.losses import build_loss
    from unetlab.models import build_unet

    keras.utils.set_random_seed(args.seed)
    model = build_unet((*[args.patch] * 3, 1), 1, depth=args.depth, filters=args.filters)
    model.compile(optimizer=keras.optimizers.Adam(), loss=build_loss("bce_dice"))
    x, y = random_batch(args)
    rate = report(f"keras {keras.backend.backend()}", model.count_params(), lambda: model.train_on_batch(x, y), args)
    print(f"(keras {keras.__version__}, jit_compile={model.jit_compile})")
    return rate


def torch_unet(depth: int, filters: int):
    """The 3D U-Net of `unetlab.models.build_unet` (defaults, one sigmoid class) as a torch Module."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    widths = [filters * 2**level for level in range(depth + 1)]

    def conv_block(inputs: int, outputs: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv3d(inputs, outputs, 3, padding=1), nn.ReLU(),
                             nn.Conv3d(outputs, outputs, 3, padding=1), nn.ReLU())

    class UNet3D(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoders = nn.ModuleList(conv_block(i, o) for i, o in zip([1, *widths[:depth - 1]], widths[:depth]))
            self.bottleneck = conv_block(widths[depth - 1], widths[depth])
            self.decoders = nn.ModuleList(conv_block(widths[level] + widths[level + 1], widths[level])
                                          for level in range(depth))
            self.head = nn.Conv3d(filters, 1, 1)

        def forward(self, x):
            skips = []
            for encoder in self.encoders:
                skips.append(encoder(x))
                x = F.max_pool3d(skips[-1], 2)
            x = self.bottleneck(x)
            for level in reversed(range(depth)):
                x = self.decoders[level](torch.cat([skips[level], F.interpolate(x, scale_factor=2.0)], dim=1))
            return torch.sigmoid(self.head(x))

    return UNet3D()


def torch_rate(args) -> float:
    import torch

    torch.manual_seed(args.seed)
    model = torch_unet(args.depth, args.filters)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 4, 1, 2, 3))) for a in random_batch(args))
    axes = (1, 2, 3, 4)

    def step():
        optimizer.zero_grad()
        p = model(x).clamp(1e-7, 1 - 1e-7)
        bce = -(y * p.log() + (1 - y) * (1 - p).log()).mean(dim=axes)
        true_positive = (y * p).sum(dim=axes)
        dice = (true_positive + 1) / (0.5 * (y.sum(dim=axes) + p.sum(dim=axes)) + 1)
        loss = (bce + 1 - dice).mean()
        loss.backward()
        optimizer.step()

    params = sum(p.numel() for p in model.parameters())
    print(f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    return report("torch cpu", params, step, args)


def keras_beside_torch(args) -> float:
    """patches/s of keras, measured first by the project's Python (this one has torch, not unetlab)."""
    command = [args.keras_python, __file__, *sys.argv[1:]]
    command.remove("--torch")
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    print(output, end="", flush=True)
    return float(re.search(r"([\d.]+) patches/s", output).group(1))


def preprocess(root: Path, depth: int) -> None:
    from unetlab.data.nnunet_raw import read_raw_dataset
    from unetlab.data.nnunet_source import dataset_fingerprint, make_plan, preprocessed_cases

    dataset = read_raw_dataset(root)
    with tempfile.TemporaryDirectory() as cache_root:
        clock = [time.perf_counter()]
        fingerprint = dataset_fingerprint(dataset)
        clock.append(time.perf_counter())
        plan = make_plan(dataset, dataset.cases, multiple=(2**depth,) * dataset.dims)
        clock.append(time.perf_counter())
        folder = preprocessed_cases(dataset, dataset.cases, plan, Path(cache_root), fingerprint)
        clock.append(time.perf_counter())
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    f, p, c = np.diff(clock)
    n = len(dataset.cases)
    print(f"preprocessing: {n} cases in {clock[-1] - clock[0]:.1f} s: {n / (clock[-1] - clock[0]):.2f} volumes/s "
          f"(fingerprint {f:.1f} s, plan {p:.1f} s, cache {c:.1f} s); cache {size / 2**20:.1f} MiB")


def write_big(out: Path, cases: int, shape, seed: int) -> None:
    """`cases` CT-like volumes of `shape` (z, y, x): air, an elliptic body (40 HU), an organ (90 HU, label 1), noise."""
    import nibabel as nib

    root = out / "Dataset102_CTLikeBig"
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    z, y, x = np.ix_(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape))
    body = (y / 0.9) ** 2 + (x / 0.95) ** 2 <= 1
    for index in range(cases):
        centre, radius = rng.uniform(-0.3, 0.3, 3), rng.uniform(0.2, 0.4, 3)
        organ = (((z - centre[0]) / radius[0]) ** 2 + ((y - centre[1]) / radius[1]) ** 2
                 + ((x - centre[2]) / radius[2]) ** 2 <= 1) & body
        image = np.where(organ, 90, np.where(body, 40, -1000)).astype(np.float32)
        image += 25 * rng.standard_normal(shape, dtype=np.float32)
        case = f"ct_{index:03d}"
        for array, path in ((image, f"imagesTr/{case}_0000.nii"), (organ.astype(np.uint8), f"labelsTr/{case}.nii")):
            nib.save(nib.Nifti1Image(array.transpose(2, 1, 0), np.eye(4)), root / path)
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "numTraining": cases,
            "file_ending": ".nii", "name": root.name}
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    size = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
    print(f"wrote {root}: {cases} cases of {'x'.join(map(str, shape))} float32 + uint8 labels, {size / 2**20:.0f} MiB")


def main() -> None:
    args = parse_args()
    if args.big:
        write_big(args.big, args.cases, tuple(args.shape), args.seed)
    elif args.preprocess:
        preprocess(args.preprocess, args.depth)
    elif args.torch:
        keras = keras_beside_torch(args)
        torch = torch_rate(args)
        print(f"ratio keras/torch: {keras / torch:.2f}")
    else:
        keras_rate(args)


if __name__ == "__main__":
    main()
