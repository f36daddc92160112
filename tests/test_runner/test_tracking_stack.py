"""The production tracking stack, for real: PostgreSQL (MLflow's backend store and Optuna's storage), an
S3-compatible artifact store (moto in server mode) and `mlflow server` proxying artifacts into it, each on a
free port of 127.0.0.1. `python -m runner` trains against it over HTTP only; what it logged is read back
through the server, and the checkpoint objects are looked up in the bucket itself.

docker/compose.yaml runs the same stack (postgres, minio, mlflow); this test is its stand-in where no
container engine runs."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import TINY, run_runner

# SQLAlchemy 2.1 reads postgresql:// URIs with psycopg 3 (SQLAlchemy 2.0 with psycopg2).
psycopg = pytest.importorskip("psycopg", reason="postgresql:// stores need psycopg 3 (pip install 'psycopg[binary]')")
boto3 = pytest.importorskip("boto3", reason="the S3 artifact store needs boto3")
moto_server = pytest.importorskip("moto.server", reason="the S3 stand-in needs moto[server]")

pytestmark = pytest.mark.slow

BUCKET = "unetlab-artifacts"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(ready, what: str, process: subprocess.Popen | None = None, timeout: float = 90) -> None:
    """Poll `ready()` until it is true; fail when `process` died or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process is None or process.poll() is None, f"{what} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{what} was not ready after {timeout} s"
        time.sleep(0.3)


def postgres_bin() -> Path:
    """The folder of initdb/pg_ctl: on PATH, a Debian-style install, or the binaries the pgserver wheel ships."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None)
    if found:
        return Path(found).resolve().parent
    pgserver = pytest.importorskip("pgserver", reason="no PostgreSQL binaries here (install postgresql or pgserver)")
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:PORT, trust auth, user `unetlab`. PostgreSQL refuses to run
    as root, so under root it runs as the `postgres` (or `nobody`) system user."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="unetlab-pg-"))  # not under pytest's root-only tmp folders
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = next(name for name in ("postgres", "nobody") if _has_user(name))
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]
        self.port = free_port()
        self.data = self.root / "data"
        self._run("initdb", "-D", str(self.data), "-U", "unetlab", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -F")  # -F: no fsync, a test cluster

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self.prefix, str(self.bin / tool), *args], capture_output=True, text=True,
                                timeout=90)
        assert result.returncode == 0, f"{tool}: {result.stdout[-2000:]}{result.stderr[-2000:]}"

    def uri(self, database: str) -> str:
        return f"postgresql://unetlab@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        # autocommit: CREATE DATABASE cannot run inside a transaction
        with psycopg.connect(self.uri("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3():
    """moto's S3 in server mode on 127.0.0.1 with the artifact bucket; yields (endpoint URL, boto3 client)."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{endpoint}/moto-api/"), "moto server", timeout=30)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mlflow_server(postgres, s3, tmp_path_factory):
    """`mlflow server` with its runs in PostgreSQL and artifacts proxied into s3://BUCKET/ (clients need no
    S3 credentials: only the server holds them)."""
    endpoint, _ = s3
    backend = postgres.create_database("mlflow")
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
             "--artifacts-destination", f"s3://{BUCKET}/", "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=log.parent, stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, **S3_ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint,
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no GenAI job runner
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(lambda: http_ok(f"{url}/health"), "mlflow server", process, timeout=120)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log.read_text()[-3000:]}") from None
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_training_logs_runs_to_postgres_and_checkpoints_to_s3_through_a_real_mlflow_server(
        mlflow_server, s3, postgres, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    work = tmp_path / "work"  # launched from a directory of its own, logging over HTTP only
    work.mkdir()
    for key in [key for key in os.environ if key.startswith(("AWS_", "MLFLOW_S3_"))]:
        monkeypatch.delenv(key)  # the trainer holds no S3 credentials (only the server's process does)
    result = run_runner(*TINY, f"tracking.uri={mlflow_server}", "tracking.run_name=stack", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("unetlab")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # proxied by the server
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "stack"
    assert run.data.params["model.filters"] == "4" and run.data.params["trainer.epochs"] == "2"
    for key in ("loss", "val_loss", "val_dice"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key  # one value per epoch
    assert "best_val_dice" in run.data.metrics

    listed = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "checkpoints/best.keras" in listed
    best = Path(client.download_artifacts(run.info.run_id, "checkpoints/best.keras", str(tmp_path)))
    assert best.stat().st_size > 1000 and best.read_bytes()[:2] == b"PK"  # a .keras file is a zip

    _, bucket = s3
    objects = {item["Key"]: item["Size"] for page in bucket.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
               for item in page.get("Contents", [])}
    stored = {key.split(f"{run.info.run_id}/artifacts/", 1)[1]: size for key, size in objects.items()
              if f"{run.info.run_id}/artifacts/" in key}
    assert set(listed) <= set(stored), (sorted(listed), sorted(stored))
    assert stored["checkpoints/best.keras"] == best.stat().st_size

    # The runs really are rows in PostgreSQL.
    with psycopg.connect(postgres.uri("mlflow")) as connection:
        row = connection.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,)).fetchone()
    assert row == ("FINISHED",)


def test_optuna_study_on_postgres_records_two_complete_trials(mlflow_server, postgres, tmp_path):
    import optuna
    from optuna.trial import TrialState

    storage = postgres.create_database("optuna")
    tiny = [o for o in TINY if not o.startswith(("model.filters=", "trainer.epochs="))]
    result = run_runner("-m", "hparams_search=optuna", "hparams_search.n_trials=2", "hparams_search.params=null",
                        "model.filters=2,4", "trainer.epochs=1", *tiny, f"hparams_search.storage={storage}",
                        f"tracking.uri={mlflow_server}", "tracking.experiment=stack-optuna", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "optuna.db").exists()

    study = optuna.load_study(study_name=None, storage=storage)  # the only study in that database
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2
    assert {trial.params["model.filters"] for trial in study.trials} <= {2, 4}

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("stack-optuna").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["optuna.trial"] for r in children} == {"0", "1"}

