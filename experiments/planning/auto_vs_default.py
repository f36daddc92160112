"""`+experiment=auto` against the default config trained for the same wall time, scored on held-out data.

    python experiments/planning/auto_vs_default.py --budget 5 --name em \
        --data data=isbi2012 data.root=HOLDOUT/train --test data=isbi2012 data.root=HOLDOUT/test

Runs, one after the other, from a fresh working folder (--workdir): (1) `+experiment=auto` with
plan.time_budget=BUDGETm; (2) the default config with the same data, as many epochs as fit and
trainer.time_limit set so the whole command takes the same wall time; then `task=evaluate` of each on the
--test data. Prints one row per run: wall seconds, the held-out Dice and IoU, and the MLflow run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

START_AND_END_SECONDS = 25  # the default run's own start (imports, data) and end (model logged), outside its fit


def runner(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode:
        raise SystemExit(f"python -m runner {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def last_run_id(log: str) -> str:
    return re.findall(r"run ([0-9a-f]{32})", log)[-1]


def evaluate(run_id: str, test: list[str], cwd: Path, tracking: str) -> dict:
    output = cwd / f"evaluation-{run_id[:8]}"
    runner(["task=evaluate", f"run_id={run_id}", *test, tracking, f"evaluate.output={output}"], cwd)
    return json.loads((output / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=5.0, help="minutes for each run")
    parser.add_argument("--name", default="dataset")
    parser.add_argument("--data", nargs="+", required=True, help="the data overrides of both runs")
    parser.add_argument("--test", nargs="+", required=True, help="the data overrides of the held-out evaluation")
    parser.add_argument("--workdir", type=Path, default=Path("auto-vs-default"))
    parser.add_argument("--only", choices=("auto", "default"), help="run one side only")
    parser.add_argument("--warm", action="store_true", help="plan once first, so neither run pays the preprocessing")
    parser.add_argument("--auto", nargs="*", default=[], help="more overrides of the auto run")
    parser.add_argument("--default", nargs="*", default=[],
                        help="what the default config needs for this data (loss=ce_dice for several classes)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    tracking = f"tracking.uri=sqlite:///{args.workdir.resolve()}/mlflow.db"
    print(f"| {args.name} | run | wall s (budget {args.budget * 60:.0f}) | held-out Dice | held-out IoU | MLflow run |")
    print("|---|---|---|---|---|---|", flush=True)

    def row(name: str, seconds: float, log: str) -> None:
        run_id = last_run_id(log)
        metrics = evaluate(run_id, args.test, args.workdir, tracking)
        print(f"| {args.name} | {name} | {seconds:.0f} | {metrics['dice']:.4f} | {metrics['iou']:.4f} | {run_id[:8]} |",
              flush=True)

    if args.warm:  # nnU-Net datasets: preprocess the cases once before either run (both would reuse the cache)
        runner(["task=plan", *args.data, "plan.name=warm-up", tracking], args.workdir)
    if args.only in (None, "auto"):
        seconds, log = runner(["+experiment=auto", *args.data, f"plan.time_budget={args.budget}m",
                               f"plan.name={args.name}", *args.auto, tracking], args.workdir)
        row(" ".join(["+experiment=auto", *args.auto]), seconds, log)
    if args.only in (None, "default"):
        limit = args.budget - START_AND_END_SECONDS / 60
        seconds, log = runner([*args.data, "trainer.epochs=10000", f"trainer.time_limit={limit:.2f}", *args.default,
                               tracking], args.workdir)
        row(" ".join(["default config", *args.default]), seconds, log)


if __name__ == "__main__":
    main()
