"""task=compare on real tiny runs and their real evaluations: two evaluations of one model differ by
nothing, a barely trained model loses with p < 0.05, the comparison is logged naming both runs; runs
without an evaluation, on other cases or without the metric are refused in one line."""

import csv

import pytest

from helpers import TINY, run_runner, shapes_dataset

pytestmark = pytest.mark.slow


def evaluate(root, run_id: str, images, masks) -> None:
    result = run_runner("task=evaluate", f"run_id={run_id}", "data=folder", f"data.images={images}",
                        f"data.masks={masks}", f"evaluate.output={root}/eval-{run_id[:8]}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]


def evaluation_ids(client, run_id: str) -> list[str]:
    experiment = client.get_run(run_id).info.experiment_id
    return [run.info.run_id for run in client.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{run_id}' and tags.task = 'evaluate'")]


@pytest.fixture(scope="module")
def runs(trained):
    """(root, the trained run, a weakened run (one epoch at a learning rate of 1e-7), their client), each
    evaluated on the same 16 shapes; the trained run twice."""
    root, strong, client = trained
    tiny = [o for o in TINY if not o.startswith(("data.num_", "trainer.epochs="))]
    result = run_runner("data=folder", f"data.images={root}/train/images", f"data.masks={root}/train/masks",
                        "data.val_fraction=0.25", *tiny, "trainer.epochs=1", "optimizer.lr=1e-7",
                        "tracking.run_name=weak", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    weak = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id],
                              "tags.task = 'train' and attributes.run_name = 'weak'")[0].info.run_id
    images, masks = shapes_dataset(root / "compare", 16, (32, 32))
    for run_id in (strong, strong, weak):
        evaluate(root, run_id, images, masks)
    return root, strong, weak, client


def test_a_weakened_run_loses_with_p_below_005_and_the_comparison_is_logged_naming_both(runs):
    root, strong, weak, client = runs
    result = run_runner("task=compare", f"run_id=[{weak},{strong}]", "compare.output=cmp", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = client.search_runs([client.get_run(strong).info.experiment_id], "tags.task = 'compare'")
    tags, metrics = run.data.tags, run.data.metrics
    assert (tags["compare_run_a"], tags["compare_run_b"]) == (weak, strong)
    assert tags["compare_eval_run_b"] in evaluation_ids(client, strong)
    assert metrics["compare_p_value"] < 0.05 and metrics["compare_ci_low"] > 0 and metrics["compare_better"] >= 12
    with open(root / "cmp" / "comparison.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16
    mean = sum(float(row["difference"]) for row in rows) / 16
    assert metrics["compare_mean_difference"] == pytest.approx(mean)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "comparison")} == {
        "comparison/comparison.csv", "comparison/comparison.txt", "comparison/paired.png"}
    assert "Wilcoxon p" in result.stdout + result.stderr  # the printed table


def test_two_evaluations_of_one_model_differ_by_nothing(runs):
    root, strong, _, client = runs
    first, second = evaluation_ids(client, strong)[:2]
    result = run_runner("task=compare", f"run_id=[{first},{second}]", "compare.metric=vi", "compare.output=same",
                        cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (root / "same" / "comparison.txt").read_text()
    assert "[+0.0000, +0.0000]" in text and "0 / 0 / 16" in text and "lower is better" in text


def test_an_experiment_name_compares_its_best_evaluated_run_with_the_next(runs):
    root, strong, weak, client = runs
    result = run_runner("task=compare", "compare.experiment=unetlab", "compare.output=best", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    newest = client.search_runs([client.get_run(strong).info.experiment_id], "tags.task = 'compare'",
                                order_by=["attributes.start_time DESC"])[0]
    assert (newest.data.tags["compare_run_a"], newest.data.tags["compare_run_b"]) == (weak, strong)


@pytest.mark.parametrize("case, message", [
    ("unevaluated", "has no evaluation: run task=evaluate run_id="),
    ("metric", "compare.metric=hd95 is not among the per-case scores of run_id="),
    ("other_cases", "the runs must be evaluated on the same cases"),
    ("experiment", "compare.experiment=nowhere is not an experiment in tracking.uri="),
])
def test_refusals_are_one_line(runs, tmp_path, case, message):
    root, strong, weak, client = runs
    args = [f"run_id=[{weak},{strong}]"]
    if case == "unevaluated":
        tiny = [o for o in TINY if not o.startswith("data.num_")]
        trained = run_runner("data=folder", f"data.images={root}/train/images", f"data.masks={root}/train/masks",
                             *tiny, "tracking.run_name=unevaluated", cwd=root)
        assert trained.returncode == 0
        lonely = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id],
                                    "attributes.run_name = 'unevaluated'")[0].info.run_id
        args = [f"run_id=[{strong},{lonely}]"]
    elif case == "experiment":
        args = ["compare.experiment=nowhere"]
    elif case == "metric":
        args.append("compare.metric=hd95")
    else:
        images, masks = shapes_dataset(tmp_path / "other", 5, (32, 32))
        other = run_runner("task=evaluate", f"run_id={weak}", "data=folder", f"data.images={images}",
                           f"data.masks={masks}", f"evaluate.output={tmp_path}/eval", cwd=root)
        assert other.returncode == 0
        newest = client.search_runs([client.get_run(weak).info.experiment_id],
                                    f"tags.mlflow.parentRunId = '{weak}'", order_by=["attributes.start_time DESC"])[0]
        args = [f"run_id=[{newest.info.run_id},{evaluation_ids(client, strong)[0]}]"]
    result = run_runner("task=compare", *args, cwd=root)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
