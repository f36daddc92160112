"""task=export and the registered pyfunc model (runner.serving) from a real tiny training run."""

import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import run_runner

pytestmark = pytest.mark.slow


def pyfunc_prediction(root, model_uri: str, backend: str | None = None, tiles: bool = True) -> str:
    """What `model_uri`'s pyfunc model predicts for a 45x77 image in a fresh process (under
    KERAS_BACKEND=`backend`): '(45, 77) uint8 True' for a mask of class ids 0/1, then ' True True' if the
    `tile_size` param is taken (64: the same mask's shape) and checked (30: refused); `tiles=False` skips
    that (the param path is the same under JAX, where each new tile size costs a compile)."""
    probe = ("import sys, numpy as np, mlflow\n"
             f"mlflow.set_tracking_uri('sqlite:///{root}/mlflow.db')\n"
             f"model = mlflow.pyfunc.load_model('{model_uri}')\n"
             "image = np.full((45, 77, 1), 200 / 255, np.float32)\n"
             "mask = model.predict(image)\n"
             "print(mask.shape, mask.dtype, set(np.unique(mask).tolist()) <= {0, 1}, end=' ')\n"
             + ("wide = model.predict(image, params={'tile_size': 64})\n"
                "try:\n    model.predict(image, params={'tile_size': 30}); refused = False\n"
                "except Exception as error:\n    refused = 'tile_size=30 does not fit' in str(error)\n"
                "print(wide.shape == mask.shape, refused, end='')\n" if tiles else "")
             + "print()")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **({"KERAS_BACKEND": backend} if backend else {})}
    result = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_registered_pyfunc_model_predicts_any_size_in_a_fresh_process(trained):
    root, _, _ = trained
    assert pyfunc_prediction(root, "models:/shapes/1") == "(45, 77) uint8 True True True"


def test_export_writes_a_saved_model_with_a_serving_signature(trained):
    root, run_id, _ = trained
    result = run_runner("task=export", f"run_id={run_id}", "export.format=saved_model", "export.output=sm", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    import tensorflow as tf

    serve = tf.saved_model.load(str(root / "sm")).signatures["serve"]
    for size in (32, 48):  # the training size, and any other the network takes (a multiple of 2**depth)
        assert tuple(serve(image=tf.zeros((1, size, size, 1)))["output_0"].shape) == (1, size, size, 1)
    assert "input of any height and width" in result.stdout + result.stderr


def test_export_under_jax_writes_a_saved_model_that_tensorflow_serves_like_the_checkpoint(trained, tmp_path):
    root, run_id, client = trained  # under JAX, Keras exports the model through jax2tf
    result = run_runner("task=export", f"run_id={run_id}", "export.format=saved_model", "export.output=sm_jax",
                        cwd=root, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(client.download_artifacts(run_id, "checkpoints/best.keras", str(tmp_path)))
    images = np.random.default_rng(0).random((2, 32, 32, 1), np.float32)
    served = tf.saved_model.load(str(root / "sm_jax")).signatures["serve"](image=tf.constant(images))["output_0"]
    np.testing.assert_allclose(served.numpy(), model.predict(images, verbose=0), atol=1e-5)
    assert "input 32x32" in result.stdout + result.stderr  # jax2tf: the training tile size


def test_export_under_jax_registers_a_pyfunc_model_that_predicts_under_jax(trained):
    root, run_id, client = trained
    result = run_runner("task=export", f"run_id={run_id}", "export.name=shapes_jax", cwd=root, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [v.version for v in client.search_model_versions("name='shapes_jax'")] == [1]
    assert pyfunc_prediction(root, "models:/shapes_jax/1", backend="jax", tiles=False) == "(45, 77) uint8 True"


def test_export_registers_a_new_version(trained):
    root, run_id, client = trained
    result = run_runner("task=export", f"run_id={run_id}", "export.name=shapes", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {v.version for v in client.search_model_versions("name='shapes'")} == {1, 2}


def test_export_refuses_an_ensemble_as_one_line(tmp_path):
    result = run_runner("task=export", "run_id=[a1,b2,c3]", "export.name=shapes", cwd=tmp_path, with_store=False)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: task=export takes one model: run_id=[a1,b2,c3] names 3; export each run on its own "
                      "(run_id=RUN_ID), or predict and evaluate with the ensemble"], result.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()
