"""runner.decision_fit: a real tiny training fits the decision layer on its validation images and records
it where predict, evaluate and the registered model read it (preprocessing.json, the artifact, the
registered model), with its params, the calibration error before and after and the reliability diagram;
`decision.calibrate=none decision.objective=none` fits nothing."""

import json
from pathlib import Path

import pytest
from mlflow.artifacts import download_artifacts

from helpers import run_runner, train_on_folder_shapes

pytestmark = pytest.mark.slow


def test_the_fitted_decision_is_stored_with_the_model_and_logged(tmp_path):
    run, client = train_on_folder_shapes(tmp_path, "decision.objective=accuracy", "tracking.register_model=shapes")
    record = json.loads(Path(client.download_artifacts(run.info.run_id, "checkpoints/preprocessing.json",
                                                       str(tmp_path))).read_text())["decision"]
    assert record["objective"] == "accuracy" and 0 < record["threshold"] < 1
    params, metrics = run.data.params, run.data.metrics
    assert float(params["decision_threshold"]) == record["threshold"]
    assert params["decision_temperature"] == (",".join(f"{t:.4g}" for t in record["temperature"]) or "none")
    assert metrics["val_ece_calibrated"] <= metrics["val_ece"]
    assert record["ece"] == {"before": pytest.approx(metrics["val_ece"]), "after": pytest.approx(metrics["val_ece_calibrated"])}
    assert metrics["val_accuracy_at_threshold"] >= metrics["val_accuracy_at_0.5"]
    assert "reliability.png" in [f.path for f in client.list_artifacts(run.info.run_id)]
    registered = download_artifacts(artifact_uri=client.get_model_version_download_uri("shapes", "1"),
                                    dst_path=str(tmp_path / "registered"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert [json.loads(p.read_text())["decision"] for p in Path(registered).rglob("preprocessing.json")] == [record]


def test_postprocess_auto_stores_the_chosen_component_rules_and_predict_says_which_ran(tmp_path):
    from unetlab.components import RULES

    run, client = train_on_folder_shapes(tmp_path, "decision.postprocess=auto", "decision.min_sizes=[2,8]")
    record = json.loads(Path(client.download_artifacts(run.info.run_id, "checkpoints/preprocessing.json",
                                                       str(tmp_path))).read_text())["decision"]
    assert all(rule["rule"] in RULES and rule["label"] in (0, 1) for rule in record["rules"])
    assert all(rule["size"] in (2, 8) for rule in record["rules"] if rule["rule"] == "min_size")
    metrics = run.data.metrics
    assert metrics["val_postprocess_dice_after"] >= metrics["val_postprocess_dice_before"]
    assert run.data.params["decision_postprocessing"] == ("; ".join(
        f"{r['rule']}{' ' + str(r['size']) if r['rule'] == 'min_size' else ''} (class {r['label']})"
        for r in record["rules"]) or "none")
    result = run_runner("task=predict", f"run_id={run.info.run_id}", f"predict.input={tmp_path}/train/images",
                        "predict.output=out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    said = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert said["rules"] == record["rules"] and said["threshold"] == record["threshold"]


def test_no_calibration_no_objective_and_no_postprocessing_fit_nothing(tmp_path):
    run, client = train_on_folder_shapes(tmp_path, "decision.calibrate=none", "decision.objective=none",
                                         "decision.postprocess=none")
    record = json.loads(Path(client.download_artifacts(run.info.run_id, "checkpoints/preprocessing.json",
                                                       str(tmp_path))).read_text())
    assert record["decision"] is None and "decision_threshold" not in run.data.params
