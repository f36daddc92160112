"""`python -m runner` given the mistakes users make: each ends with one `error:` line that names
the key or file and what was expected, exit status 2, no traceback, no MLflow run left RUNNING
and no user file touched. Mirrors `runner.__main__` (which turns those mistakes into one line)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from helpers import TINY, run_runner, shapes_dataset, write_nnunet_dataset, write_pairs, write_png

pytestmark = pytest.mark.slow

UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
FOLDER = ["data=folder", "data.images={user}/images", "data.masks={user}/masks",
          *(override for override in TINY if not override.startswith("data.num_"))]


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """Launch folders with an MLflow store: `run` holds a tiny finished task=train run, `deleted`
    a copy of that store where the run is deleted (its artifacts stay where they were logged)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("trained")
    result = run_runner(*TINY, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])
    deleted = tmp_path_factory.mktemp("deleted")
    shutil.copy(root / "mlflow.db", deleted / "mlflow.db")
    MlflowClient(f"sqlite:///{deleted}/mlflow.db").delete_run(run.info.run_id)
    return {"run_id": run.info.run_id, "run": root, "deleted": deleted}


# ------------------------------------------------------------- user files each case starts from
def pairs(change: Callable[[Path], None] = lambda user: None) -> Callable[[Path], None]:
    """Six 40x40 image/mask pairs (0/255 masks) under user/images and user/masks, then `change`."""
    def setup(user: Path) -> None:
        write_pairs(user)
        change(user)
    return setup


def nnunet_dataset(change: Callable[[Path], None] = lambda dataset: None) -> Callable[[Path], None]:
    """Three small CT volumes as user/Dataset001_Organ (`helpers.write_nnunet_dataset`), then `change(dataset)`."""
    def setup(user: Path) -> None:
        change(write_nnunet_dataset(user, cases=3, shape=(4, 16, 16)))
    return setup


def replace_label(dataset: Path, array: np.ndarray) -> None:
    """organ_001's label volume replaced by `array` (z, y, x), in the other labels' geometry."""
    import nibabel as nib

    path = dataset / "labelsTr" / "organ_001.nii.gz"
    nib.save(nib.Nifti1Image(array.transpose(2, 1, 0).astype(np.uint8), nib.load(path).affine), path)


def empty_folders(user: Path) -> None:
    (user / "images").mkdir(parents=True)
    (user / "masks").mkdir(parents=True)


def class_ids_with_a_7(user: Path) -> None:
    """Masks of class ids 0/1 (for num_classes=3), one with a 7 in its first rows."""
    for mask in sorted((user / "masks").iterdir()):
        write_png(mask, (np.asarray(_read(mask)) > 0).astype(np.uint8))
    seven = np.zeros((40, 40), np.uint8)
    seven[:5] = 7
    write_png(user / "masks" / "s3.png", seven)


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def images_to_predict(*names: str) -> Callable[[Path], None]:
    def setup(user: Path) -> None:
        from PIL import Image

        (user / "in").mkdir(parents=True)
        for name in names:
            Image.fromarray(np.full((32, 32), 80, np.uint8)).save(user / "in" / name)
        (user / "notes.txt").write_text("the user's notes\n")
    return setup


def and_file(name: str, content: bytes, first: Callable[[Path], None]) -> Callable[[Path], None]:
    """`first`, then the file user/NAME."""
    def setup(user: Path) -> None:
        first(user)
        (user / name).write_bytes(content)
    return setup


def deleted_experiment(user: Path) -> None:
    """The launch folder's store (tracking.uri=sqlite:///mlflow.db) has experiment unetlab, deleted."""
    from mlflow import MlflowClient

    user.mkdir(parents=True)
    client = MlflowClient(f"sqlite:///{user.parent}/mlflow.db")
    client.delete_experiment(client.create_experiment("unetlab"))


def shapes(user: Path) -> None:
    shapes_dataset(user, 4, (32, 32))


PREDICT = ["task=predict", "predict.input={user}/in"]
TINY_3D = ["model.depth=2", "model.filters=2", "trainer.epochs=1"]
# (overrides, setup of the user's files under tmp_path/user, substrings of the error line).
# {user} is that folder; {run} a finished run (launched where its store is); {deleted} the same run deleted.
CASES = [
    pytest.param(["model.filtres=64"], None, ["model.filtres", "not in 'UNetConfig'", "did you mean model.filters?"],
                 id="unknown-key"),
    pytest.param(["+model.filtres=64", *TINY], None, ["model.filtres is not a key of model",
                                                       "did you mean model.filters?"], id="appended-unknown-key"),
    pytest.param(["model.filters=abc"], None, ["model.filters", "'abc'", "could not be converted to Integer"],
                 id="wrong-type"),
    pytest.param(["task=trian"], None, ["task", "'trian'", "expected one of [train, evaluate"], id="unknown-task"),
    pytest.param(["loss=weighted_bc"], None, ["Could not find 'loss/weighted_bc'", "did you mean loss=weighted_bce?"],
                 id="mistyped-group-option"),
    pytest.param(["data=zzz"], None, ["Could not find 'data/zzz'", "(options: folder, isbi2012, nnunet, synthetic, synthetic3d)"],
                 id="unknown-group-option"),
    pytest.param(["data.image_size=30", "model.depth=4"], None,
                 ["data.image_size=30", "not divisible by 2**depth=16", "use 16 or 32"], id="size-for-depth"),
    pytest.param(["+experiment=isbi2012_cpu", "loss=bce"], None,
                 ["loss.class_balance: In 'experiment/isbi2012_cpu'", "Key 'class_balance' not in 'LossConfig'"],
                 id="preset-key-the-loss-lacks"),
    pytest.param(["model=encoder_unet", "model.freeze_encoder_epochs=5", "trainer.epochs=5"], None,
                 ["model.freeze_encoder_epochs=5 must be below trainer.epochs=5"], id="frozen-for-every-epoch"),
    pytest.param(["trainer.encoder_lr_scale=0.1"], None,
                 ["trainer.encoder_lr_scale=0.1", "model=unet has none", "model=encoder_unet"], id="lr-scale-no-encoder"),
    pytest.param(["data=synthetic3d", "model=unetpp"], None,
                 ["model=unetpp builds 2D networks only", "data=synthetic gives volumes", "model=unet or model=nnunet"],
                 id="2d-model-on-volumes"),
    pytest.param(["data=synthetic3d", "augment.blur=1.0"], None,
                 ["augment.blur works on 2D images; volumes take every other augmentation", "augment.blur=1.0"],
                 id="blur-on-volumes"),
    pytest.param(["data=synthetic3d", "model.dims=2"], None,
                 ["model.dims=2, but data=synthetic gives 3D volumes", "leave model.dims=null"], id="dims-mismatch"),
    pytest.param(["data=nnunet", "data.root={user}/nope"], None, ["data.root=", "/user/nope is not a directory"],
                 id="nnunet-root-missing"),
    pytest.param(["data=nnunet", "data.root={user}/Dataset001_Organ", "data.channels=2"], nnunet_dataset(),
                 ["data.channels=2, but", "Dataset001_Organ/dataset.json gives 1"], id="nnunet-channels"),
    pytest.param(["data=nnunet", "data.root={user}/Dataset001_Organ", *TINY_3D], nnunet_dataset(
        lambda dataset: replace_label(dataset, np.zeros((4, 16, 12)))),
        ["case organ_001: imagesTr/organ_001_0000.nii.gz is 4x16x16 but labelsTr/organ_001.nii.gz is 4x16x12"],
        id="nnunet-label-shape"),
    pytest.param(["data=nnunet", "data.root={user}/Dataset001_Organ", *TINY_3D], nnunet_dataset(
        lambda dataset: replace_label(dataset, np.full((4, 16, 16), 3))),
        ["case organ_001", "labelsTr/organ_001.nii.gz has values [3] not in dataset.json labels [0, 1]"],
        id="nnunet-label-value"),
    pytest.param(["model.filters=["], None, ["model.filters=[", "no viable alternative"], id="override-syntax"),
    pytest.param(["hparams_search=optuna"], None, ["hparams_search=optuna", "add -m"], id="search-without-m"),
    pytest.param(["data=folder", "data.images={user}/nope", "data.masks={user}/nope"], None,
                 ["data.images='", "/user/nope' is not a directory"], id="missing-folder"),
    pytest.param(FOLDER, empty_folders, ["empty_folder", "/user/images' holds no images (.png"], id="empty-folder"),
    pytest.param(FOLDER, pairs(lambda user: (user / "masks" / "s0.png").unlink()),
                 ["images/s0.png has no mask", "no file named s0.* in masks/"], id="image-without-mask"),
    pytest.param(FOLDER, pairs(lambda user: write_png(user / "masks" / "s1.png", np.zeros((20, 20), np.uint8))),
                 ["images/s1.png is 40x40 but masks/s1.png is 20x20"], id="mask-size"),
    pytest.param(FOLDER, pairs(lambda user: write_png(user / "masks" / "s1.png",
                                                      (np.arange(1600) % 6).astype(np.uint8).reshape(40, 40))),
                 ["masks/s1.png has values [2, 3, 4, 5] outside 0/1 and 0/255", "data.num_classes=1"],
                 id="binary-labels-0-to-5"),
    pytest.param([*FOLDER, "data.num_classes=3", "loss=ce_dice"], pairs(class_ids_with_a_7),
                 ["masks/s3.png has values [7] outside the classes 0..2", "data.num_classes=3"], id="label-7-of-3"),
    pytest.param(FOLDER, pairs(lambda user: (user / "images" / "s2.png").write_bytes(b"not a png " * 20)),
                 ["images/s2.png cannot be decoded"], id="undecodable-image"),
    pytest.param(FOLDER, pairs(lambda user: write_png(user / "images" / "s0.png", np.zeros((40, 40, 3), np.uint8))),
                 ["images/s0.png has 3 channels, data.channels=1"], id="rgb-for-one-channel"),
    pytest.param(TINY, deleted_experiment, ["tracking.experiment=unetlab is deleted", "restore it"],
                 id="deleted-experiment"),
    pytest.param([*PREDICT, f"run_id={UNKNOWN_RUN}"], images_to_predict("a.png"),
                 [f"run_id={UNKNOWN_RUN} is not a run in tracking.uri="], id="unknown-run-id"),
    pytest.param([*PREDICT, f"run_id=[{UNKNOWN_RUN},{UNKNOWN_RUN}]"], images_to_predict("a.png"),
                 [f"run_id names run {UNKNOWN_RUN} twice", "Received: run_id=["], id="ensemble-repeats-a-run"),
    pytest.param([f"resume={UNKNOWN_RUN}"], None, [f"resume={UNKNOWN_RUN} is not a run in tracking.uri="],
                 id="unknown-resume-id"),
    pytest.param(["resume={deleted}"], None, ["resume=", "is a deleted run", "mlflow runs restore"],
                 id="resume-deleted-run"),
    pytest.param([*PREDICT, "run_id={deleted}", "predict.output={user}/masks"], images_to_predict("a.png"),
                 ["run_id=", "is a deleted run"], id="predict-deleted-run"),
    pytest.param(["task=evaluate", "run_id={deleted}", "data=folder", "data.images={user}/images",
                  "data.masks={user}/masks", "evaluate.output={user}/evaluation"], shapes,
                 ["run_id=", "is a deleted run"], id="evaluate-deleted-run"),
    pytest.param(["resume={run}", "model.filters=8"], None,
                 ["resume=", "cannot take model.filters", "allowed: trainer.epochs"], id="resume-unsafe-override"),
    pytest.param([*PREDICT, "run_id={run}", "predict.output={user}/in/masks"], images_to_predict("a.png", "b.png"),
                 ["predict.output='", "/in/masks' is inside predict.input="], id="output-inside-input"),
    pytest.param([*PREDICT, "run_id={run}", "predict.output={user}/masks"], images_to_predict("a.png", "a.tif"),
                 ["a.png and a.tif in predict.input=", "share the stem 'a'"], id="colliding-stems"),
    pytest.param(["task=predict", "predict.input={user}/nope.png", "run_id={run}"], None,
                 ["predict.input='", "/nope.png' is neither an image file nor a directory"], id="missing-input"),
    # root ignores file modes, so a folder whose parent is a file stands for an unwritable output
    pytest.param([*PREDICT, "run_id={run}", "predict.output={user}/notes.txt/masks"], images_to_predict("a.png"),
                 ["predict.output='", "notes.txt"], id="output-under-a-file"),
    pytest.param([*PREDICT, "run_id={run}", "predict.output={user}/notes.txt"], images_to_predict("a.png"),
                 ["predict.output='", "notes.txt"], id="output-is-a-file"),
    pytest.param([*PREDICT, "checkpoint={user}/model.h5"], and_file("model.h5", b"HDF", images_to_predict("a.png")),
                 ["checkpoint='", "/model.h5' is not a .keras file"], id="checkpoint-not-keras"),
    pytest.param([*PREDICT, "checkpoint={user}/model.keras"],
                 and_file("model.keras", b"not a zip", images_to_predict("a.png")),
                 ["checkpoint='", "/model.keras'"], id="checkpoint-not-a-keras-zip"),
]


FRESH_PROCESS_CASES = ("unknown-key", "image-without-mask")


@pytest.mark.parametrize("overrides, setup, expected", CASES)
def test_a_mistake_is_one_error_line_and_exit_2(overrides, setup, expected, tmp_path, request):
    """Run in this test process (`runner.__main__.main`, its exit status from SystemExit)."""
    check_mistake(overrides, setup, expected, tmp_path, request)


@pytest.mark.parametrize("overrides, setup, expected", [case for case in CASES if case.id in FRESH_PROCESS_CASES])
def test_a_mistake_in_a_fresh_process_is_one_error_line_and_exit_status_2(overrides, setup, expected, tmp_path,
                                                                          request):
    """The same, as a user's shell sees it: the interpreter's own exit status and streams, for a mistake
    found at composition and one found in the data once TensorFlow has started."""
    check_mistake(overrides, setup, expected, tmp_path, request, fresh_process=True)


def check_mistake(overrides, setup, expected, tmp_path, request, fresh_process=False):
    user = tmp_path / "user"
    if setup:
        setup(user)
    cwd, values = tmp_path, {"user": user}
    for key in ("run", "deleted"):
        if any(f"{{{key}}}" in override for override in overrides):
            stores = request.getfixturevalue("stores")
            cwd, values[key] = stores[key], stores["run_id"]
    before = snapshot(user)

    result = run_runner(*(override.format(**values) for override in overrides), cwd=cwd, timeout=240,
                        fresh_process=fresh_process)

    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-3000:]
    assert all(part in errors[0] for part in expected), errors[0]
    assert result.returncode == 2
    assert snapshot(user) == before  # nothing written, changed or removed among the user's files
    assert not running_runs(cwd)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file (bytes, mtime) and folder (None) under `folder`."""
    if not folder.exists():
        return {}
    return {str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns) if path.is_file() else None
            for path in folder.rglob("*")}


def running_runs(cwd: Path) -> list[str]:
    """Ids of runs still RUNNING in the launch folder's store (tracking.uri's default), deleted ones included."""
    if not (cwd / "mlflow.db").exists():
        return []
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    experiments = [experiment.experiment_id for experiment in client.search_experiments(view_type=ViewType.ALL)]
    return [run.info.run_id for run in client.search_runs(experiments, run_view_type=ViewType.ALL)
            if run.info.status == "RUNNING"]


def test_an_error_line_never_shows_a_password(capsys):
    from runner.__main__ import fail

    with pytest.raises(SystemExit) as exited:
        fail("resume=abc is not a run in tracking.uri=postgresql://me:hunter2@db.example/mlflow")
    assert exited.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "hunter2" not in line and line.startswith("error: resume=abc") and "me:***@db.example" in line
