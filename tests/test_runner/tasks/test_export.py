"""task=export and the registered pyfunc model (runner.serving) from a real tiny training run; the
self-contained SavedModel and ONNX model checked against task=predict in processes without unetlab."""

import os
import subprocess
import sys
from pathlib import Path

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


def test_export_writes_the_bare_network_as_a_saved_model_with_a_serving_signature(trained):
    root, run_id, _ = trained
    result = run_runner("task=export", f"run_id={run_id}", "export.format=network", "export.output=sm", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    import tensorflow as tf

    serve = tf.saved_model.load(str(root / "sm")).signatures["serve"]
    for size in (32, 48):  # the training size, and any other the network takes (a multiple of 2**depth)
        assert tuple(serve(image=tf.zeros((1, size, size, 1)))["output_0"].shape) == (1, size, size, 1)
    assert "input of any height and width" in result.stdout + result.stderr


def test_export_under_jax_writes_a_network_saved_model_that_tensorflow_serves_like_the_checkpoint(trained, tmp_path):
    root, run_id, client = trained  # under JAX, Keras exports the model through jax2tf
    result = run_runner("task=export", f"run_id={run_id}", "export.format=network", "export.output=sm_jax",
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


# Run in a fresh interpreter where unetlab and Keras cannot be imported: the exported SavedModel (with
# TensorFlow) and ONNX model (with onnxruntime) segment each image of IMAGES; prints one JSON line per image.
WITHOUT_UNETLAB = """
import json, sys
sys.modules["unetlab"] = sys.modules["runner"] = sys.modules["keras"] = None
import numpy as np
from PIL import Image
FORMAT, MODEL, IMAGES = sys.argv[1:4]
if FORMAT == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(MODEL)
    names = [output.name for output in session.get_outputs()]
    run = lambda image: dict(zip(names, session.run(None, {"image": image})))
    meta = json.loads(session.get_modelmeta().custom_metadata_map["unetlab"])
else:
    import tensorflow as tf
    loaded = tf.saved_model.load(MODEL)
    run = lambda image: {k: v.numpy() for k, v in loaded.signatures["serving_default"](image=tf.constant(image)).items()}
    meta = json.loads(loaded.signatures["metadata"]()["metadata"].numpy())
for path in IMAGES.split(","):
    outputs = run(np.asarray(Image.open(path))[..., None])
    np.save(path + "." + FORMAT + ".mask.npy", outputs["mask"])
    np.save(path + "." + FORMAT + ".probabilities.npy", outputs["probabilities"])
print(json.dumps({"run_id": meta["run_id"], "threshold": meta["decision"]["threshold"],
                  "imported": sorted(m for m in ("unetlab", "runner", "keras") if sys.modules.get(m) is not None)}))
"""


def served(fmt: str, model, images: list) -> dict:
    """Run WITHOUT_UNETLAB on `images` with the `fmt` model at `model`: its JSON line."""
    import json

    result = subprocess.run([sys.executable, "-c", WITHOUT_UNETLAB, fmt, str(model), ",".join(map(str, images))],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(trained):
    """task=predict (TTA flips) of images of sizes the model never saw, and both self-contained exports."""
    from helpers import shapes_dataset

    root, run_id, _ = trained
    images, _ = shapes_dataset(root / "unseen", 2, (33, 51))
    wide, _ = shapes_dataset(root / "unseen_wide", 1, (61, 97))
    paths = sorted(images.iterdir()) + sorted(wide.iterdir())
    for folder in (images, wide):  # predictions beside the images: NAME.png -> NAME.pred/NAME.png
        result = run_runner("task=predict", f"run_id={run_id}", f"predict.input={folder}",
                            f"predict.output={folder.parent}/pred", "predict.tta=flips",
                            "predict.save_probabilities=true", cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
    for fmt in ("saved_model", "onnx"):
        result = run_runner("task=export", f"run_id={run_id}", f"export.format={fmt}", f"export.output=exp_{fmt}",
                            "predict.tta=flips", cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
    return root, run_id, paths


@pytest.mark.parametrize("fmt, model", [("saved_model", "exp_saved_model"), ("onnx", "exp_onnx/model.onnx")])
def test_the_exports_masks_equal_predicts_on_unseen_sizes_in_a_process_without_unetlab(exported, fmt, model):
    from PIL import Image

    root, run_id, paths = exported
    said = served(fmt, root / model, paths)
    assert said["run_id"] == run_id and said["imported"] == []
    for path in paths:
        predicted = path.parent.parent / "pred"
        np.testing.assert_array_equal(np.load(f"{path}.{fmt}.mask.npy"),
                                      np.asarray(Image.open(predicted / f"{path.stem}.png")) // 255)
        np.testing.assert_allclose(np.load(f"{path}.{fmt}.probabilities.npy"), np.load(predicted / f"{path.stem}.npy"),
                                   atol=1e-4)


def test_saved_model_cli_serves_the_saved_model_as_tf_serving_loads_it(exported, tmp_path):
    """saved_model_cli loads with TF1's session loader, as TF Serving does: the graph holds its weights."""
    from PIL import Image

    root, _, paths = exported
    np.save(tmp_path / "image.npy", np.asarray(Image.open(paths[0]))[..., None])
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "run", "--dir", str(root / "exp_saved_model"), "--tag_set", "serve",
                             "--signature_def", "serving_default", "--inputs", f"image={tmp_path}/image.npy",
                             "--outdir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "mask.npy"),
                                  np.asarray(Image.open(paths[0].parent.parent / "pred" / f"{paths[0].stem}.png")) // 255)


def test_the_stored_threshold_is_what_the_export_uses(trained, tmp_path):
    """Change the threshold in the model's preprocessing.json (what training stores) and the export changes."""
    import json

    root, run_id, client = trained
    for name in ("best.keras", "preprocessing.json"):
        downloaded = Path(client.download_artifacts(run_id, f"checkpoints/{name}", str(tmp_path)))
    recorded = json.loads(downloaded.read_text())
    downloaded.write_text(json.dumps({**recorded, "decision": {**recorded["decision"], "threshold": 0.0}}))
    result = run_runner("task=export", f"checkpoint={downloaded.with_name('best.keras')}", "export.format=onnx",
                        f"export.output={tmp_path}/onnx", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    images, _ = __import__("helpers").shapes_dataset(tmp_path / "images", 1, (40, 24))
    (path,) = sorted(images.iterdir())
    assert served("onnx", tmp_path / "onnx" / "model.onnx", [path])["threshold"] == 0.0
    assert np.load(f"{path}.onnx.mask.npy").all()  # every probability reaches 0


@pytest.mark.parametrize("args, message", [
    (["export.format=onnx", "RUN", "+BLOCK"], 'export.format=onnx needs tf2onnx, which is not installed: pip install "unetlab[onnx]"'),
    (["export.format=saved_model", "checkpoint=missing.keras"], "checkpoint='missing.keras' does not exist"),
    (["export.format=onnx", "+EMPTY_RUN"], "has no checkpoints/best.keras artifact (is it a finished task=train run?)"),
    (["export.format=saved_model", "RUN", "predict.postprocess=watershed"],
     "predict.postprocess=watershed applies a watershed (scikit-image), which has no TensorFlow op"),
    (["export.format=onnx", "RUN", "+JAX"], "export.format=onnx builds one TensorFlow graph around the network: run it "
                                           "with KERAS_BACKEND=tensorflow"),
    (["export.format=saved_model", "RUN", "decision.threshold=-0.1"], "decision.threshold must be a probability in [0, 1]"),
])
def test_bad_exports_fail_with_one_line(trained, tmp_path, args, message):
    root, run_id, _ = trained
    env, backend = None, None
    if "+BLOCK" in args:  # tf2onnx missing: a package of that name that cannot be imported
        (tmp_path / "tf2onnx").mkdir()
        (tmp_path / "tf2onnx" / "__init__.py").write_text("raise ImportError('no tf2onnx here')\n")
        env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if "+JAX" in args:
        backend = "jax"
    if "+EMPTY_RUN" in args:  # a finished training run whose checkpoint is gone
        client = __import__("mlflow").MlflowClient(f"sqlite:///{root}/mlflow.db")
        empty = client.create_run(client.get_experiment_by_name("unetlab").experiment_id, tags={"task": "train"})
        client.set_terminated(empty.info.run_id)
        args.append(f"run_id={empty.info.run_id}")
    args = [f"run_id={run_id}" if a == "RUN" else a for a in args if not a.startswith("+")]
    result = run_runner("task=export", *args, f"export.output={tmp_path}/out", cwd=root, env=env, backend=backend,
                        fresh_process=env is not None)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
