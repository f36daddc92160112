"""Planning time: the properties pass, the planner and the memory probes of `task=plan`, per dataset.

    python experiments/benchmarks/planning_time.py RAW_DIR/Dataset511_EM2D RAW_DIR/Dataset521_EM2D ...

Each dataset is planned by `python -m runner task=plan data=nnunet` in a fresh process with an empty cache (so
the properties are computed, not read back), tracked to a throwaway store. Prints, per dataset: cases, the
properties pass (seconds and cases/s), the probes (count and seconds), and the whole command's wall time.
Put the machine's `make benchmark` img/s beside the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def plan_once(root: Path, work: Path, overrides: list[str]) -> dict:
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "UNETLAB_CACHE_DIR": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    store = work / "mlflow.db"
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "runner", "task=plan", "data=nnunet", f"data.root={root}",
                             f"tracking.uri=sqlite:///{store}", f"plan.output={work / 'plans'}", *overrides],
                            cwd=work, capture_output=True, text=True, env=env)
    wall = time.monotonic() - start
    if result.returncode:
        raise SystemExit(f"task=plan on {root} failed:\n{result.stderr[-2000:]}")
    client = MlflowClient(f"sqlite:///{store}")
    run = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])[0]
    return {**run.data.metrics, "wall": wall, "patch": run.data.params["plan.patch_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--overrides", nargs="*", default=["plan.time_budget=10m"],
                        help="of each task=plan (default: a 10 minute budget, whose first probe is a quarter-size plan)")
    args = parser.parse_args()
    print("| dataset | cases | properties s | cases/s | probes | probes s | task=plan wall s | planned patch |")
    print("|---|---|---|---|---|---|---|---|")
    for root in args.datasets:
        cases = sum(1 for _ in (root / "labelsTr").iterdir())
        with tempfile.TemporaryDirectory() as folder:
            figures = plan_once(root.resolve(), Path(folder), args.overrides)
        seconds = figures["properties_seconds"]
        print(f"| {root.name} | {cases} | {seconds:.1f} | {cases / seconds:.1f} | {figures['probes']:.0f} | "
              f"{figures['probe_seconds']:.1f} | {figures['wall']:.0f} | {figures['patch']} |", flush=True)


if __name__ == "__main__":
    main()
