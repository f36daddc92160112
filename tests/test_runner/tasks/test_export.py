"""task=export and the registered pyfunc model (runner.serving) from a real tiny training run."""

import os
import subprocess
import sys

import pytest

from helpers import run_runner

pytestmark = pytest.mark.slow


def test_registered_pyfunc_model_predicts_any_size_in_a_fresh_process(trained):
    root, _, _ = trained
    probe = ("import sys, numpy as np, mlflow\n"
             f"mlflow.set_tracking_uri('sqlite:///{root}/mlflow.db')\n"
             "model = mlflow.pyfunc.load_model('models:/shapes/1')\n"
             "mask = model.predict(np.full((45, 77, 1), 200 / 255, np.float32))\n"
             "print(mask.shape, mask.dtype, set(np.unique(mask).tolist()) <= {0, 1})")
    result = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "(45, 77) uint8 True"


def test_export_writes_a_saved_model_with_a_serving_signature(trained):
    root, run_id, _ = trained
    result = run_runner("task=export", f"run_id={run_id}", "export.format=saved_model", "export.output=sm", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    import tensorflow as tf

    assert "serve" in tf.saved_model.load(str(root / "sm")).signatures


def test_export_registers_a_new_version(trained):
    root, run_id, client = trained
    result = run_runner("task=export", f"run_id={run_id}", "export.name=shapes", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {v.version for v in client.search_model_versions("name='shapes'")} == {1, 2}


def test_export_refuses_an_ensemble_as_one_line(tmp_path):
    result = run_runner("task=export", "run_id=[a1,b2,c3]", "export.name=shapes", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: task=export takes one model: run_id=[a1,b2,c3] names 3; export each run on its own "
                      "(run_id=RUN_ID), or predict and evaluate with the ensemble"], result.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()
