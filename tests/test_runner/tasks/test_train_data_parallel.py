"""Data-parallel training (`trainer.distribution=data_parallel`): two replicas, on two logical devices of
one process or on two TensorFlow workers, train to the losses of one device, tracked in one MLflow run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import GRID, TINY, only_run, run_runner

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- data parallel
# Four steps of a model without batch norm or dropout, with plain SGD (a summed gradient would
# double its steps) on a loss that is a mean over images: one device on batches of 4 and two
# replicas on batches of 2 each see the same global batches and must end the epoch at the same
# loss and val_loss, but for the order in which float32 gradients are summed.
DATA_PARALLEL = [*TINY, GRID, "trainer.run_eagerly=false", "trainer.epochs=1", "loss=bce", "optimizer=sgd",
                 "optimizer.lr=0.5", "optimizer.momentum=0.0", "trainer.schedule=constant", "data.num_train=16",
                 "data.num_val=8"]
SAME_LOSS_RTOL = 1e-5
DATA_PARALLEL_LOSSES = {  # the losses the replicas are checked on: Keras' own reduction, and a pixel-weighted one's
    "bce": ["loss=bce"],
    "weighted_ce_dice": ["loss=weighted_ce_dice", "data.num_classes=2"],
}
TWO_TENSORFLOW_DEVICES = (  # `python -m runner` with the machine's CPU split into two logical devices
    "import sys, tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
    "from runner.__main__ import main; sys.argv[0] = 'runner'; main()")
TWO_JAX_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def run_on_two_devices(backend: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    if backend == "jax":
        return run_runner(*args, cwd=cwd, backend="jax", env=TWO_JAX_DEVICES)
    import os

    return subprocess.run([sys.executable, "-c", TWO_TENSORFLOW_DEVICES, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def epoch_losses(cwd: Path):
    """(loss, val_loss) of the first epoch of the only run in `cwd`, and the run."""
    client, run = only_run(f"sqlite:///{cwd}/mlflow.db")
    return tuple(client.get_metric_history(run.info.run_id, key)[0].value for key in ("loss", "val_loss")), run


def one_and_two_devices(root: Path, backend: str, loss: str = "bce") -> tuple[Path, Path]:
    """Folders of a run on one device (batches of 4) and one on two (2 per replica), with `loss`."""
    one, two = root / "one", root / "two"
    one.mkdir(), two.mkdir()
    args = [arg for arg in DATA_PARALLEL if arg != "loss=bce"] + DATA_PARALLEL_LOSSES[loss]
    single = run_runner(*args, "trainer.batch_size=4", cwd=one, backend=backend)
    assert single.returncode == 0, single.stderr[-3000:]
    parallel = run_on_two_devices(backend, *args, "trainer.distribution=data_parallel",
                                  "trainer.batch_size=2", cwd=two)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert "global batch 4 = trainer.batch_size 2 x 2 replicas" in parallel.stdout + parallel.stderr
    return one, two


# Under TensorFlow the replicas train on weighted_ce_dice: a pixel-weighted loss (its own `__call__`;
# weighted_bce takes the same path) must be reduced, and divided by the replicas, like Keras' own (it once
# trained at twice the gradient on two); under JAX on bce, Keras' own reduction.
TENSORFLOW_LOSS = "weighted_ce_dice"


@pytest.fixture(scope="module")
def tensorflow_runs(tmp_path_factory):
    return one_and_two_devices(tmp_path_factory.mktemp("tensorflow_runs"), "tensorflow", TENSORFLOW_LOSS)


@pytest.mark.parametrize("backend, loss", [("jax", "bce"), ("tensorflow", TENSORFLOW_LOSS)])
def test_two_replicas_train_the_first_epoch_to_the_losses_of_one_device(tmp_path, backend, loss, request):
    pytest.importorskip(backend)
    one, two = request.getfixturevalue("tensorflow_runs") if backend == "tensorflow" else \
        one_and_two_devices(tmp_path, backend, loss)
    (losses_one, run_one), (losses_two, run_two) = epoch_losses(one), epoch_losses(two)
    for run in (run_one, run_two):  # also: training runs under either backend, and says which
        assert run.info.status == "FINISHED" and run.data.params["keras_backend"] == backend
        assert "failed_end_steps" not in run.data.tags
    assert (run_one.data.params["replicas"], run_one.data.params["global_batch_size"]) == ("1", "4")
    assert (run_two.data.params["replicas"], run_two.data.params["global_batch_size"]) == ("2", "4")
    assert run_two.data.params["trainer.distribution"] == "data_parallel"
    assert losses_two == pytest.approx(losses_one, rel=SAME_LOSS_RTOL)


def test_a_run_does_not_resume_on_another_number_of_replicas(tensorflow_runs, tmp_path):
    _, two = tensorflow_runs
    _, run = epoch_losses(two)
    result = run_runner(f"resume={run.info.run_id}", "trainer.epochs=2", cwd=two)  # one device
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: resume={run.info.run_id}: the run trained on 2 replica(s) and this process has 1" in result.stderr
    assert MlflowClient(f"sqlite:///{two}/mlflow.db").get_run(run.info.run_id).info.status == "FINISHED"


def free_ports(count: int) -> list[int]:
    import socket

    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:  # all bound at once: no two alike
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def test_two_tensorflow_workers_train_like_one_device_into_exactly_one_run_kept_by_the_chief(tmp_path,
                                                                                          tensorflow_runs):
    import os

    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    workers = [subprocess.Popen(
        [sys.executable, "-m", "runner", *[arg for arg in DATA_PARALLEL if arg != "loss=bce"],
         *DATA_PARALLEL_LOSSES[TENSORFLOW_LOSS], "trainer.distribution=data_parallel", "trainer.batch_size=2",
         f"hydra.run.dir={tmp_path}/worker{index}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(scratch),
                        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    try:
        logs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "this is worker 0 (chief)" in logs[0] and "this is worker 1;" in logs[1]
    losses, run = epoch_losses(tmp_path)  # exactly one run, the chief's
    assert run.info.status == "FINISHED" and run.data.params["replicas"] == "2"
    assert losses == pytest.approx(epoch_losses(tensorflow_runs[0])[0], rel=SAME_LOSS_RTOL)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert "checkpoints/best.keras" in {item.path for item in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "worker 1" in logs[1] and not list(scratch.glob("unetlab-worker-*"))  # worker 1's checkpoints are gone
