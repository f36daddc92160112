"""Split an ISBI 2012 folder (image/, label/) into train/ and test/ folders of symlinks: the last
`--test` slices in name order (a contiguous block of the stack, so no test slice has a training
neighbour on both sides) are held out, never trained on nor used to pick a checkpoint.

    python experiments/isbi2012_holdout.py ../shared/data/isbi2012 isbi-holdout --test 4
    python -m runner +experiment=isbi2012_cpu data.root=isbi-holdout/train
    python -m runner task=evaluate data=isbi2012 data.root=isbi-holdout/test run_id=RUN
"""

from __future__ import annotations

import argparse
from pathlib import Path


def hold_out(source: Path, target: Path, test: int) -> dict[str, list[str]]:
    """Symlink source/{image,label}/NAME into target/{train,test}/{image,label}/NAME; return the names per side."""
    names = sorted(path.name for path in (source / "image").iterdir() if (source / "label" / path.name).is_file())
    if not 0 < test < len(names):
        raise SystemExit(f"error: --test must be between 1 and {len(names) - 1} ({len(names)} slices in {source})")
    sides = {"train": names[:-test], "test": names[-test:]}
    for side, members in sides.items():
        for folder in ("image", "label"):
            (target / side / folder).mkdir(parents=True, exist_ok=True)
            for name in members:
                link = target / side / folder / name
                if not link.exists():
                    link.symlink_to((source / folder / name).resolve())
    return sides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder holding image/ and label/")
    parser.add_argument("target", type=Path, help="folder to create train/ and test/ in")
    parser.add_argument("--test", type=int, default=4, help="slices held out (the last in name order)")
    arguments = parser.parse_args()
    sides = hold_out(arguments.source, arguments.target, arguments.test)
    print(f"train: {len(sides['train'])} slices; test: {', '.join(sides['test'])}")


if __name__ == "__main__":
    main()
