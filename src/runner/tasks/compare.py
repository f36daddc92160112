"""`task=compare run_id=[A,B]`: is run B better than run A? A paired comparison, case by case, of their
evaluations on the same cases (`unetlab.comparison`): the mean difference B - A with a bootstrap confidence
interval, the Wilcoxon signed-rank p-value, the cases won, lost and tied, a paired plot; printed as a short
table and logged as an MLflow run that names both."""

from __future__ import annotations

import csv
import dataclasses
import logging
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from unetlab.comparison import format_table, paired_comparison, paired_plot
from unetlab.errors import DataError

from .. import tracking
from ..schema import Config

log = logging.getLogger(__name__)

PER_CASE_FILES = ("evaluation/per_image.csv", "evaluation/per_case.csv")  # what task=evaluate logs, by data kind
CASE_COLUMNS = ("image", "case")  # the column naming the case in each
DATA_PARAMS = ("data.images", "data.masks", "data.root")  # where an evaluation's cases came from


def compare(config: Config) -> dict:
    """Compare the evaluations of `run_id=[A,B]` (or of the two best runs of `compare.experiment`) on
    `compare.metric`; write comparison.csv, paired.png and comparison.txt to `compare.output` and log them
    in a run of A's experiment, tagged with both runs."""
    settings = config.compare
    if settings.experiment:
        run_a, run_b = two_best(settings.experiment, settings.metric, config.tracking.uri)
    else:
        run_a, run_b = config.run_ids()
    (eval_a, values_a), (eval_b, values_b) = (per_case_values(run_id, settings.metric, config.tracking.uri)
                                              for run_id in (run_a, run_b))
    check_same_data(eval_a, eval_b, config.tracking.uri)
    comparison = paired_comparison(values_a, values_b, settings.metric, resamples=settings.resamples,
                                   confidence=settings.confidence, seed=config.seed)
    labels = (run_label(run_a, config.tracking.uri), run_label(run_b, config.tracking.uri))
    output = Path(settings.output)
    output.mkdir(parents=True, exist_ok=True)
    table = format_table(comparison, labels)
    (output / "comparison.txt").write_text(table + "\n")
    with open(output / "comparison.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "a", "b", "difference"])
        writer.writeheader()
        writer.writerows(comparison.rows())
    paired_plot(comparison, output / "paired.png", labels)
    log.info("paired comparison of %s\n%s", settings.metric, table)

    experiment = mlflow.MlflowClient(config.tracking.uri).get_experiment(
        tracking.live_run(run_a, config.tracking.uri, "run_id").info.experiment_id).name
    tags = {"task": "compare", "compare_run_a": run_a, "compare_run_b": run_b, "compare_eval_run_a": eval_a,
            "compare_eval_run_b": eval_b}
    with tracking.tracked_run(dataclasses.replace(config.tracking, experiment=experiment), tags, what=f"compare-{labels[0]}-vs-{labels[1]}") as run:
        tracking.retry_locked(mlflow.log_params, {"compare.metric": settings.metric, "compare.resamples": settings.resamples,
                                                  "compare.confidence": settings.confidence, "seed": config.seed,
                                                  "run_a": run_a, "run_b": run_b})
        tracking.retry_locked(mlflow.log_metrics, {f"compare_{key}": value
                                                   for key, value in comparison.summary().items()})
        mlflow.log_artifacts(str(output), "comparison")
    return {"run_id": run.info.run_id, **comparison.summary()}


def two_best(experiment: str, metric: str, tracking_uri: str) -> tuple[str, str]:
    """(the runner-up, the best) of the training runs of `experiment`, ranked by the mean over cases of `metric`
    in their newest evaluations (the statistic the comparison then tests), in the metric's direction. The pair is
    chosen on the cases it is tested on: its interval is optimistic for the best (docs/inference.md)."""
    from unetlab.comparison import higher_is_better

    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise DataError(f"compare.experiment={experiment} is not an experiment in tracking.uri={tracking_uri}")
    evaluations = client.search_runs([found.experiment_id], "tags.task = 'evaluate' and attributes.status = 'FINISHED'",
                                     order_by=["attributes.start_time DESC"])
    newest: dict[str, str] = {}  # source run -> its newest evaluation (single models only)
    for run in evaluations:
        newest.setdefault(run.data.tags.get("source_run_id") or "", run.info.run_id)
    newest.pop("", None)
    means = {}
    for source, evaluation in newest.items():
        values = per_case_table(client, client.get_run(evaluation), source).get(metric)
        if values is not None:
            means[source] = float(np.mean([float(value) for value in values.values()]))
    if len(means) < 2:
        raise DataError(f"compare.experiment={experiment} has {len(means)} run(s) evaluated with per-case {metric}: "
                        "task=compare needs two (task=evaluate run_id=RUN ... for each)")
    ranked = sorted(means, key=means.get, reverse=higher_is_better(metric))
    log.info("compare.experiment=%s: the best run by mean %s is %s (%.4f), the next %s (%.4f)", experiment, metric,
             ranked[0], means[ranked[0]], ranked[1], means[ranked[1]])
    return ranked[1], ranked[0]


def evaluation_of(run_id: str, tracking_uri: str):
    """The run itself when it is a task=evaluate run, else the newest finished task=evaluate run nested under it;
    a one-line DataError when there is none."""
    run = tracking.live_run(run_id, tracking_uri, "run_id")
    if run.data.tags.get("task") == "evaluate":
        return run
    found = mlflow.MlflowClient(tracking_uri).search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}' and tags.task = 'evaluate' and "
        "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"], max_results=1)
    if not found:
        raise DataError(f"run_id={run_id} has no evaluation: run task=evaluate run_id={run_id} data.images=DIR "
                        "data.masks=DIR first (task=compare pairs the evaluations' per-case scores)")
    return found[0]


def per_case_table(client, evaluation, run_id: str) -> dict[str, dict[str, str]]:
    """{score: {case: value}} of an evaluation run's per-case table; a one-line DataError when it logged none,
    or an empty one."""
    with tempfile.TemporaryDirectory(prefix="unetlab-compare-") as target:
        for name in PER_CASE_FILES:
            try:
                path = Path(client.download_artifacts(evaluation.info.run_id, name, target))
            except (mlflow.exceptions.MlflowException, OSError):
                continue
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            break
        else:
            rows = []
    key = next((column for column in CASE_COLUMNS if rows and column in rows[0]), None)
    if key is None:
        raise DataError(f"evaluation run {evaluation.info.run_id} (of run_id={run_id}) logged no per-case scores "
                        f"({' or '.join(PER_CASE_FILES)}, with a row per case)")
    return {column: {row[key]: row[column] for row in rows} for column in rows[0] if column not in CASE_COLUMNS}


def per_case_values(run_id: str, metric: str, tracking_uri: str) -> tuple[str, dict[str, str]]:
    """(the evaluation run, {case: its `metric`}) of `run_id` (`evaluation_of`); a one-line DataError when its
    per-case table has no column `metric` (naming the ones it has)."""
    evaluation = evaluation_of(run_id, tracking_uri)
    table = per_case_table(mlflow.MlflowClient(tracking_uri), evaluation, run_id)
    if metric not in table:
        raise DataError(f"compare.metric={metric} is not among the per-case scores of run_id={run_id}'s evaluation "
                        f"{evaluation.info.run_id}: choose one of {', '.join(table)}")
    return evaluation.info.run_id, table[metric]


def check_same_data(eval_a: str, eval_b: str, tracking_uri: str) -> None:
    """Refuse, in one line, two evaluations of different data (their `data.images`, `data.masks` or `data.root`
    params differ): cases of the same file names would be paired silently."""
    client = mlflow.MlflowClient(tracking_uri)
    params_a, params_b = (client.get_run(run_id).data.params for run_id in (eval_a, eval_b))
    for key in DATA_PARAMS:
        if params_a.get(key) != params_b.get(key):
            raise DataError(f"the runs must be evaluated on the same cases: evaluation {eval_a} has {key}="
                            f"{params_a.get(key)}, evaluation {eval_b} has {key}={params_b.get(key)}")


def run_label(run_id: str, tracking_uri: str) -> str:
    """A run's name (its id's first 8 characters when unnamed), for the table and the plot."""
    return tracking.live_run(run_id, tracking_uri, "run_id").info.run_name or run_id[:8]
