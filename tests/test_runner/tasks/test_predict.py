"""task=predict from a real tiny training run, as a user runs it; bad requests as one line."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import TINY, run_runner, shapes_dataset, write_png

pytestmark = pytest.mark.slow


def test_predict_writes_same_size_masks_overlays_and_probabilities(trained):
    root, run_id, _ = trained
    images, _ = shapes_dataset(root / "odd", 2, (61, 97))
    result = run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}", "predict.output=out",
                        "predict.save_probabilities=true", "predict.tta=flips", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    from PIL import Image

    for name in ("s0", "s1"):
        mask = np.asarray(Image.open(root / "out" / f"{name}.png"))
        assert mask.shape == (61, 97) and set(np.unique(mask)) <= {0, 255}
        assert np.load(root / "out" / f"{name}.npy").shape == (61, 97, 1)
        assert np.asarray(Image.open(root / "out" / f"{name}_overlay.png")).shape == (61, 97, 3)


def test_the_challenge_format_stacks_the_cell_probabilities_in_one_float32_tiff(trained):
    """predict.format=challenge: challenge.tif, a page per image in name order, 1 - the sigmoid's membrane
    probability; predict.postprocess=watershed cuts the cells first (0 on its lines), in the .npy too."""
    import tifffile

    root, run_id, _ = trained
    images, _ = shapes_dataset(root / "stack", 3, (48, 64))
    for postprocess in ("none", "watershed"):
        result = run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}", f"predict.output={postprocess}",
                            "predict.format=challenge", f"predict.postprocess={postprocess}",
                            "predict.save_probabilities=true", "predict.watershed.h=1", cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
        with tifffile.TiffFile(root / postprocess / "challenge.tif") as tiff:
            stack = tiff.asarray()
            assert len(tiff.pages) == 3 and tiff.pages[0].dtype == np.float32
        assert stack.shape == (3, 48, 64) and 0.0 <= stack.min() and stack.max() <= 1.0
        membrane = np.stack([np.load(root / postprocess / f"s{index}.npy")[..., 0] for index in range(3)])
        np.testing.assert_allclose(stack, 1.0 - membrane, atol=1e-6)
        assert not list((root / postprocess).glob("s0.png"))  # the stack instead of mask PNGs
    raw = tifffile.imread(root / "none" / "challenge.tif")
    cut = tifffile.imread(root / "watershed" / "challenge.tif")
    changed = cut != raw
    assert np.all(cut[changed] == 0.0) and np.all(raw[changed] > 0.0)


def test_auto_applies_the_watershed_the_model_recorded_and_none_when_it_recorded_none(trained, tmp_path):
    """predict.postprocess=auto: the model's preprocessing.json decides (what a training's choice writes
    there, `runner.postprocess_choice`), whatever predict.watershed says; "none" or no record: the raw map."""
    import json

    from unetlab.postprocess import Watershed

    root, run_id, client = trained
    images, _ = shapes_dataset(tmp_path / "auto", 2, (40, 48))
    for name in ("best.keras", "preprocessing.json"):
        downloaded = Path(client.download_artifacts(run_id, f"checkpoints/{name}", str(tmp_path)))
    checkpoint = downloaded.with_name("best.keras")

    def predicted(record, postprocess="auto"):
        preprocessing = json.loads(checkpoint.with_name("preprocessing.json").read_text())
        checkpoint.with_name("preprocessing.json").write_text(json.dumps({**preprocessing, "postprocess": record}))
        output = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        result = run_runner("task=predict", f"checkpoint={checkpoint}", f"predict.input={images}",
                            f"predict.output={output}", "predict.save_probabilities=true",
                            f"predict.postprocess={postprocess}", "predict.watershed.h=50", cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
        return [1.0 - np.load(output / f"s{index}.npy")[..., 0] for index in range(2)]

    raw = predicted(None, "none")
    threshold = round(float(np.median(raw)), 4)
    watershed = Watershed(threshold=threshold, h=1.0, sigma=0.0)
    cut = predicted(watershed.as_dict())
    assert sum(int(np.sum(c != r)) for c, r in zip(cut, raw)) > 0  # the recorded h=1, not predict.watershed.h=50
    for found, expected in zip(cut, raw):
        np.testing.assert_allclose(found, watershed.apply(expected), atol=1e-6)
    for record in ({"method": "none"}, None):
        for found, expected in zip(predicted(record), raw):
            np.testing.assert_allclose(found, expected, atol=1e-6)


def test_the_models_stored_decision_calibrates_and_cuts_and_decision_threshold_overrides_it(trained, tmp_path):
    """The decision layer training fits (`runner.decision_fit`) lives in preprocessing.json: its temperature
    changes the probabilities, its threshold the masks; `decision.threshold=` beats the stored one."""
    import json

    from unetlab.decision import calibrate

    root, run_id, client = trained
    images, _ = shapes_dataset(tmp_path / "decide", 2, (40, 48))
    for name in ("best.keras", "preprocessing.json"):
        downloaded = Path(client.download_artifacts(run_id, f"checkpoints/{name}", str(tmp_path)))
    recorded = json.loads(downloaded.read_text())
    assert recorded["decision"]["threshold"] is not None  # what the training fitted (decision.objective=dice)

    def predicted(decision, *overrides):
        downloaded.write_text(json.dumps({**recorded, "decision": decision}))
        output = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        result = run_runner("task=predict", f"checkpoint={downloaded.with_name('best.keras')}", f"predict.input={images}",
                            f"predict.output={output}", "predict.save_probabilities=true", *overrides, cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
        return np.load(output / "s0.npy"), np.asarray(Image.open(output / "s0.png")) > 0

    raw, raw_mask = predicted(None)
    np.testing.assert_array_equal(raw_mask, raw[..., 0] >= 0.5)
    hot, hot_mask = predicted({"temperature": [3.0], "threshold": 0.2})
    np.testing.assert_allclose(hot, calibrate(raw, (3.0,)), atol=1e-5)
    np.testing.assert_array_equal(hot_mask, hot[..., 0] >= 0.2)
    _, forced = predicted({"temperature": [3.0], "threshold": 0.2}, "decision.threshold=0.0")
    assert forced.all()


@pytest.mark.parametrize("tile_size", [16, 64])
def test_predict_takes_a_tile_size_other_than_the_training_size(trained, tile_size):
    """The run trained on 32x32 images (depth 2): any multiple of 4 tiles the image."""
    root, run_id, _ = trained
    images, _ = shapes_dataset(root / f"tiles{tile_size}", 1, (61, 97))
    result = run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}",
                        f"predict.output=tiled{tile_size}", f"predict.tile_size={tile_size}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"tiles of {tile_size}" in result.stdout + result.stderr
    assert np.asarray(Image.open(root / f"tiled{tile_size}" / "s0.png")).shape == (61, 97)


def predictions_agree_across_backends(root, run_id: str) -> None:
    """`run_id`'s model predicts two images the same under TensorFlow and under JAX: probabilities
    within 2e-3 (the two backends' float32 sums differ by ~1e-4 at most)."""
    images, _ = shapes_dataset(root / "portable", 2, (40, 56))
    for backend in ("tensorflow", "jax"):
        result = run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}",
                            f"predict.output={backend}", "predict.save_probabilities=true", cwd=root, backend=backend)
        assert result.returncode == 0, result.stderr[-3000:]
    for name in ("s0", "s1"):
        assert (root / "tensorflow" / f"{name}.png").is_file()
        np.testing.assert_allclose(np.load(root / "jax" / f"{name}.npy").astype(np.float32),
                                   np.load(root / "tensorflow" / f"{name}.npy").astype(np.float32), atol=2e-3)


def test_a_model_trained_under_tensorflow_predicts_the_same_under_jax(trained):
    pytest.importorskip("jax")
    predictions_agree_across_backends(*trained[:2])


def test_a_model_trained_under_jax_predicts_the_same_under_tensorflow(trained_under_jax):
    predictions_agree_across_backends(*trained_under_jax[:2])


@pytest.fixture(scope="module")
def second_run(trained):
    """Another tiny run on `trained`'s images, normalised with its own dataset statistics."""
    root, _, client = trained
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    result = run_runner("data=folder", f"data.images={root}/train/images", f"data.masks={root}/train/masks",
                        "data.val_fraction=0.25", "data.normalize=dataset", "seed=1", *tiny, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = client.get_experiment_by_name("unetlab").experiment_id
    return client.search_runs([experiment], "tags.task = 'train'", max_results=1)[0].info.run_id


def test_an_ensemble_predicts_from_the_mean_of_its_members_probabilities(trained, second_run):
    root, first, _ = trained
    images, _ = shapes_dataset(root / "ensemble", 2, (45, 37))
    for output, run_id in (("first", first), ("second", second_run), ("both", f"[{first},{second_run}]")):
        result = run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}", f"predict.output={output}",
                            "predict.save_probabilities=true", "decision.threshold=0.5", cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
    assert f"ensemble of 2 models: runs {first}, {second_run}" in result.stdout + result.stderr
    for name in ("s0", "s1"):
        single, other, mean = (np.load(root / output / f"{name}.npy").astype(np.float32)[..., 0]
                               for output in ("first", "second", "both"))
        assert not np.allclose(single, other, atol=1e-2)
        np.testing.assert_allclose(mean, (single + other) / 2, atol=1e-6)  # saved as float32
        mask = np.asarray(Image.open(root / "both" / f"{name}.png"))
        clear = np.abs(mean - 0.5) > 1e-6  # not on the threshold up to rounding
        np.testing.assert_array_equal(mask[clear], np.where(mean[clear] > 0.5, 255, 0))


@pytest.mark.parametrize("args, message", [
    (["run_id=abc", "checkpoint=x.keras"], "needs exactly one model source"),
    ([], "needs exactly one model source: run_id=RUN_ID, model_uri=models:/NAME/VERSION or checkpoint=PATH.keras"),
    (["run_id=0123456789abcdef"], "run_id=0123456789abcdef is not a run in tracking.uri="),
    (["checkpoint=missing.keras"], "checkpoint='missing.keras' does not exist (a run's best model: run_id=RUN_ID"),
    (["RUN", "predict.input=empty"], "predict.input='empty' holds no images"),
    (["RUN", "predict.input=rgb"], "image has 3 channels but the model expects 1"),
    (["RUN", "predict.input=rgb", "predict.output=rgb"], "predict.output='rgb' is inside predict.input='rgb'"),
    (["RUN", "predict.input=rgb", "predict.output=rgb/masks"], "predict.output='rgb/masks' is inside predict.input="),
    (["RUN", "predict.input=rgb/colour.png", "predict.output=rgb"],
     "predict.output='rgb' would overwrite predict.input='rgb/colour.png' with its mask"),
    (["RUN", "predict.input=clash"], "a.png and a.tif in predict.input='clash' share the stem 'a'"),
    (["RUN", "predict.input=latin1"], "caf\\xe9.png in predict.input='latin1': file name not UTF-8, rename it"),
    (["RUN", "predict.input=bomb"], "bomb/a.png cannot be decoded (more than MAX_PIXELS=268435456 pixels"),
    (["RUN", "predict.input=sizes", "predict.format=challenge"],
     "predict.format=challenge stacks the slices into one TIFF; predict.input holds images of several sizes (32x32, 32x48)"),
    (["RUN", "decision.threshold=1.5"], "decision.threshold must be a probability in [0, 1] (or null: the model's"),
    (["RUN", "predict.input=clash/a.png", "predict.tile_size=30"], "tile_size=30 does not fit the model (a same-padding U-Net needs a multiple"),
])
def test_bad_requests_fail_with_their_own_one_line_error(trained, args, message):
    root, run_id, _ = trained
    (root / "empty").mkdir(exist_ok=True)
    write_png(root / "rgb" / "colour.png", np.zeros((32, 32, 3), np.uint8))
    for name in ("a.png", "a.tif"):
        write_png(root / "clash" / name, np.zeros((32, 32), np.uint8))
    write_png(root / "sizes" / "a.png", np.zeros((32, 32), np.uint8))
    write_png(root / "sizes" / "b.png", np.zeros((32, 48), np.uint8))
    (root / "latin1").mkdir(exist_ok=True)
    with open(os.path.join(os.fsencode(root / "latin1"), b"caf\xe9.png"), "wb") as file:
        file.write((root / "clash" / "a.png").read_bytes())
    (root / "bomb").mkdir(exist_ok=True)
    Image.new("1", (17000, 17000)).save(root / "bomb" / "a.png")  # 35 kB that decode to 289 megapixels
    args = [f"run_id={run_id}" if a == "RUN" else a for a in args]
    if not any(a.startswith("predict.input") for a in args):
        args.append("predict.input=rgb")
    result = run_runner("task=predict", *args, cwd=root)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert np.asarray(Image.open(root / "rgb" / "colour.png")).shape == (32, 32, 3)  # no mask written over it
    assert not (root / "rgb" / "masks").exists()
