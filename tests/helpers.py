"""Helpers shared by the tests: paths, the tiny config, and running `python -m runner`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# A model and dataset small enough to train two epochs in seconds. Eager: tracing a
# tf.function costs ~5 s per model here, far more than the steps themselves; the module
# fixture of test_train.py trains in graph mode. No predictions.png (GRID turns it on): drawing it
# costs a tiny run ~15% of its time, and a run whose picture fails only warns and tags, so the tests
# that check the picture, or that no end step failed, ask for it.
TINY = [
    "trainer.run_eagerly=true",
    "data.image_size=32",
    "data.num_train=8",
    "data.num_val=4",
    "model.depth=2",
    "model.filters=4",
    "trainer.epochs=2",
    "trainer.batch_size=4",
    "trainer.verbose=0",
    "tracking.num_predictions=2",
    "tracking.log_predictions=false",
]
GRID = "tracking.log_predictions=true"


def group_options() -> list[tuple[str, str]]:
    """(group, option) for every YAML option of every config group that has a schema."""
    from importlib import resources

    from runner.schema import SCHEMAS

    conf = resources.files("runner.conf")
    return [(group, option.name[:-5]) for group in SCHEMAS
            for option in sorted((conf / group).iterdir(), key=lambda p: p.name) if option.name.endswith(".yaml")]


def run_runner(*args: str, cwd: Path, timeout: float = 300, backend: str | None = None,
               env: dict[str, str] | None = None, fresh_process: bool = False,
               with_store: bool = True) -> subprocess.CompletedProcess:
    """`python -m runner ARGS` launched from `cwd`, as a user would start it: in this test process
    (the imports, about 10 s a process here, are paid once); under a `backend` other than this
    process's, in that backend's process of this test process (`BackendProcess`: its imports paid
    once too); or in a fresh subprocess where the process is what is tested (`fresh_process`,
    signals, or an `env` that must be set before Keras starts). `with_store`: the store it tracks to
    starts as a copy of an empty one, unless it exists (tests that check that nothing was tracked say
    `with_store=False`)."""
    import keras

    if with_store:
        seed_store(args, cwd)
    if backend == keras.backend.backend():
        backend = None  # this process runs it under that backend already
    if fresh_process or env:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **({"KERAS_BACKEND": backend} if backend else {}),
               **(env or {})}
        return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=env)
    if backend:
        return BackendProcess.of(backend).run(args, cwd, timeout)
    return run_in_process(args, cwd)


class BackendProcess:
    """A Python process under KERAS_BACKEND=`backend` that runs `python -m runner` commands one after
    another with `run_in_process`, as this test process runs its own: each command gets this process's
    environment of the moment and its own launch folder, and a JAX run costs its work, not ~10 s of
    imports (TensorFlow, JAX, Keras, MLflow) besides. One per backend and test process, ended at exit."""

    SCRIPT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
channel = os.fdopen(os.dup(1), "w")  # the answers; what the libraries print goes to stderr
os.dup2(2, 1)
from helpers import run_in_process
for line in sys.stdin:
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(request["env"])
    result = run_in_process(request["args"], request["cwd"])
    channel.write(json.dumps([result.returncode, result.stdout, result.stderr]) + "\\n")
    channel.flush()
"""
    started: dict[str, "BackendProcess"] = {}

    @classmethod
    def of(cls, backend: str) -> "BackendProcess":
        if backend not in cls.started or cls.started[backend].process.poll() is not None:
            cls.started[backend] = cls(backend)
        return cls.started[backend]

    def __init__(self, backend: str) -> None:
        import atexit

        self.backend = backend
        self.log = tempfile.TemporaryFile("w+")  # its stderr: libraries' messages, read back if it dies
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(Path(__file__).parent)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=self.environment())
        atexit.register(self.close)

    def environment(self) -> dict[str, str]:
        return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": self.backend}

    def run(self, args: Sequence[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        import json
        import select

        command = ["runner", *args]
        self.process.stdin.write(json.dumps({"args": list(args), "cwd": str(cwd), "env": self.environment()}) + "\n")
        self.process.stdin.flush()
        if not select.select([self.process.stdout], [], [], timeout)[0]:
            self.process.kill()  # as subprocess.run(timeout=) would; the next command starts another
            self.process.wait()
            raise subprocess.TimeoutExpired(command, timeout)
        answer = self.process.stdout.readline()
        if not answer:
            self.log.seek(0)
            raise RuntimeError(f"the {self.backend} process ended:\n{self.log.read()[-3000:]}")
        code, stdout, stderr = json.loads(answer)
        return subprocess.CompletedProcess(command, code, stdout, stderr)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_in_process(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    """`runner.__main__.main()` with `args` as argv, from `cwd`: its exit status (SystemExit's code; 1
    and the traceback on stderr for an exception it lets through, as Python would) and output."""
    import contextlib
    import io
    import logging.config
    import signal
    import traceback

    from runner.__main__ import main

    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.argv, os.getcwd(), signal.getsignal(signal.SIGTERM), dict(os.environ)  # a sweep sets variables
    hydra_in_use = get_gh_backup()  # the session's `compose` fixture keeps Hydra initialised
    GlobalHydra.instance().clear()
    root_logger = logging.getLogger()
    saved_logging = root_logger.handlers[:], root_logger.level, logging.config._clearExistingHandlers
    code = 0
    try:
        sys.argv = ["runner", *args]
        os.chdir(cwd)
        forget_mlflow_stores()
        # Hydra configures logging with dictConfig, which closes every handler it replaces: pytest's own
        # would be closed under it. Replaced, not closed, and given back afterwards.
        logging.config._clearExistingHandlers = lambda: (logging._handlers.clear(), logging._handlerList.clear())
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main()
            except SystemExit as exited:
                code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
                if isinstance(exited.code, str):
                    print(exited.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - what the interpreter would print and exit 1 with
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
        signal.signal(signal.SIGTERM, saved[2])
        os.environ.clear()
        os.environ.update(saved[3])
        restore_gh_from_backup(hydra_in_use)
        for handler in set(root_logger.handlers) - set(saved_logging[0]):
            handler.close()  # the run's log file and its stream to the captured stdout
        root_logger.handlers[:], logging.config._clearExistingHandlers = saved_logging[0], saved_logging[2]
        root_logger.setLevel(saved_logging[1])
    return subprocess.CompletedProcess(["runner", *args], code, stdout.getvalue(), stderr.getvalue())


def forget_mlflow_stores() -> None:
    """MLflow keeps a store and an SQLAlchemy engine per tracking URI for the life of a process: the
    default relative `sqlite:///mlflow.db` (and its `./mlruns` artifact root) would stay bound to the
    first launch folder. A user's process has one launch folder; the tests' shared process has many,
    so each in-process launch drops what MLflow holds for relative SQLite URIs (private API: a change
    in MLflow fails here loudly, not as a test reading another test's store)."""
    from mlflow.store.jobs.sqlalchemy_store import SqlAlchemyJobStore
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()
    ModelRegistryStoreRegistry._get_store_with_resolved_uri.cache_clear()
    for store in (TrackingStore, RegistryStore, SqlAlchemyJobStore):
        for uri in [uri for uri in store._engine_map if uri.startswith("sqlite:///") and uri[10:11] != "/"]:
            store._engine_map.pop(uri).dispose()


def seed_store(args: Sequence[str], cwd: Path) -> None:
    """Copy an empty MLflow SQLite store to where `args` will track (`tracking.uri=sqlite:///PATH`, or
    the default ./mlflow.db of `cwd`) unless one is there: MLflow creates a store's tables in ~2.5 s."""
    uri = next((arg.split("=", 1)[1] for arg in args if arg.startswith("tracking.uri=")), "sqlite:///mlflow.db")
    if not uri.startswith("sqlite:///"):
        return
    target = Path(cwd) / uri[len("sqlite:///"):]  # an absolute path stays absolute
    if not target.exists() and target.parent.is_dir():
        shutil.copyfile(empty_store(), target)


def empty_store() -> Path:
    """An MLflow SQLite store with its tables and nothing else, made once per machine and MLflow version
    (under a lock: test processes start together)."""
    import fcntl

    import mlflow

    folder = Path(tempfile.gettempdir()) / f"unetlab-tests-empty-store-{mlflow.__version__}"
    folder.mkdir(exist_ok=True)
    store = folder / "mlflow.db"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not store.exists():
            from mlflow import MlflowClient

            partial = folder / f"partial-{os.getpid()}.db"
            MlflowClient(f"sqlite:///{partial}").search_experiments()
            partial.rename(store)
    return store


def only_run(tracking_uri: str):
    """(client, run) of the one run of the `unetlab` experiment in the store at `tracking_uri`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("unetlab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def train_on_folder_shapes(root: Path, *overrides: str):
    """A tiny run on 8 32x32 shapes as folder data in `root` (a quarter validated at full resolution):
    (its run, a client of its store)."""
    from mlflow.tracking import MlflowClient

    images, masks = shapes_dataset(root / "train", 8, (32, 32))
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    result = run_runner("data=folder", f"data.images={images}", f"data.masks={masks}", "data.val_fraction=0.25",
                        *tiny, *overrides, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id], "tags.task = 'train'",
                                order_by=["start_time DESC"], max_results=1)
    return run, client


def final_state(client, run_id: str, target: Path):
    """The newest training state a run logged (a finished run keeps one slot)."""
    from unetlab.checkpoints import Checkpoints, latest_state

    target.mkdir(parents=True)
    slots = [Path(artifact.path).name for artifact in client.list_artifacts(run_id, "checkpoints")
             if Path(artifact.path).name in Checkpoints.STATE_SLOTS]
    assert len(slots) == 1
    return latest_state([Path(client.download_artifacts(run_id, f"checkpoints/{name}", str(target))) for name in slots])


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def shapes_dataset(root: Path, count: int, size: tuple[int, int]) -> tuple[Path, Path]:
    """Bright discs on a dark background: images and 0/255 masks."""
    rng = np.random.default_rng(len(root.name))
    rows, cols = np.mgrid[: size[0], : size[1]]
    for i in range(count):
        cy, cx, r = rng.integers(8, size[0] - 8), rng.integers(8, size[1] - 8), rng.integers(4, 9)
        mask = ((rows - cy) ** 2 + (cols - cx) ** 2 <= r**2).astype(np.uint8) * 255
        image = np.clip(40 + 0.6 * mask + rng.normal(0, 10, size), 0, 255).astype(np.uint8)
        write_png(root / "images" / f"s{i}.png", image)
        write_png(root / "masks" / f"s{i}.png", mask)
    return root / "images", root / "masks"


def write_pairs(root: Path, count: int = 6, size: int = 40) -> tuple[Path, Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[rng.integers(0, size - 12):, rng.integers(0, size - 12):][:10, :10] = 255
        Image.fromarray(np.clip(60 + 0.5 * mask + rng.normal(0, 8, mask.shape), 0, 255).astype(np.uint8)).save(
            root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root / "images", root / "masks"


def register_model(root: Path, model, name: str):
    """`model` logged by `runner.serving` as models:/NAME/1 in a fresh SQLite store under `root`
    (1-channel, binary, 32-pixel tiles); returns the store's URI, its client and the run."""
    import mlflow

    from runner.serving import log_segmentation_model
    from unetlab.preprocessing import Preprocessing

    uri = f"sqlite:///{root}/mlflow.db"
    model.save(root / "best.keras")
    Preprocessing(channels=1, num_classes=1, tile_size=32).save(root / Preprocessing.FILENAME)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("unetlab", artifact_location=str(root / "artifacts"))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            log_segmentation_model(root / "best.keras", root / Preprocessing.FILENAME, name)
    finally:
        mlflow.set_tracking_uri(previous)
    return uri, client, run


def write_nnunet_dataset(root: Path, cases: int = 6, shape: tuple[int, int, int] = (12, 32, 32),
                         spacing: tuple[float, float, float] = (3.0, 0.8, 0.8), seed: int = 0) -> Path:
    """A CT-like nnU-Net v2 raw dataset of `cases` NIfTI volumes (z, y, x) = `shape` at `spacing`: bright
    ellipsoids (label 1) in noisy soft tissue, channel "CT", as `root`/Dataset001_Organ."""
    import json

    import nibabel as nib

    dataset = root / "Dataset001_Organ"
    (dataset / "imagesTr").mkdir(parents=True)
    (dataset / "labelsTr").mkdir()
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(size) for size in shape], indexing="ij")
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    for index in range(cases):
        centre = rng.uniform(0.3, 0.7, 3) * shape
        radius = rng.uniform(0.15, 0.3, 3) * shape
        label = (sum(((axis - c) / r) ** 2 for axis, c, r in zip(grid, centre, radius)) <= 1).astype(np.uint8)
        image = (-100.0 + 150.0 * label + rng.normal(0, 30, shape)).astype(np.float32)
        name = f"organ_{index:03d}"
        nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), affine), dataset / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label.transpose(2, 1, 0), affine), dataset / "labelsTr" / f"{name}.nii.gz")
    (dataset / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "numTraining": cases,
        "file_ending": ".nii.gz"}))
    return dataset
