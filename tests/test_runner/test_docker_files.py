"""docker/compose.yaml and the Dockerfiles, read as data: no container engine runs here, so these checks
catch what would only fail at `docker compose up` (a port open to the network, a dependency that starts
before its server is ready, a backend URI that no longer matches the database) or drift from `make`."""

from __future__ import annotations

import re
import shlex
from urllib.parse import urlsplit

import pytest
import yaml

from helpers import ROOT

DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu"]


def depends_on(service: dict) -> dict[str, str]:
    """{dependency: condition}, from the list or the mapping form of depends_on."""
    needs = service.get("depends_on", {})
    if isinstance(needs, list):
        return {name: "service_started" for name in needs}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in needs.items()}


def command_words(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def test_every_published_port_binds_127_0_0_1_only():
    published = [(name, str(port)) for name, service in SERVICES.items() for port in service.get("ports", [])]
    assert published
    for name, port in published:
        assert port.startswith("127.0.0.1:") and port.count(":") == 2, f"{name} publishes {port} beyond localhost"


def test_dependencies_exist_and_wait_for_health_or_completion():
    for name, service in SERVICES.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dependency)
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has dependents but no healthcheck"


def test_every_long_running_service_with_dependents_has_a_healthcheck():
    dependents = {dependency for service in SERVICES.values() for dependency in depends_on(service)}
    one_shots = {name for service in SERVICES.values() for name, condition in depends_on(service).items()
                 if condition == "service_completed_successfully"}
    for name in dependents - one_shots:
        assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name} has dependents but no healthcheck"


def test_mlflow_backend_uri_matches_the_postgres_service():
    words = command_words(SERVICES["mlflow"])
    backend = urlsplit(words[words.index("--backend-store-uri") + 1])
    postgres = SERVICES["postgres"]["environment"]
    assert backend.scheme in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2")
    assert backend.hostname == "postgres" and (backend.port or 5432) == 5432
    assert backend.username == postgres["POSTGRES_USER"] and backend.password == postgres["POSTGRES_PASSWORD"]
    assert backend.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert "postgres" in depends_on(SERVICES["mlflow"])


def test_mlflow_serves_artifacts_from_the_bucket_the_creator_makes_on_the_s3_service():
    mlflow = SERVICES["mlflow"]
    words = command_words(mlflow)
    assert "--serve-artifacts" in words  # clients go through the server and need no S3 credentials
    bucket = urlsplit(words[words.index("--artifacts-destination") + 1])
    assert bucket.scheme == "s3"
    creator = " ".join(command_words(SERVICES["create-bucket"]))
    assert re.search(rf"mc mb (--ignore-existing )?\w+/{bucket.hostname}\b", creator), creator
    endpoint = urlsplit(mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"])
    assert endpoint.hostname in SERVICES and endpoint.hostname in depends_on(SERVICES["create-bucket"])
    store = SERVICES[endpoint.hostname]["environment"]
    assert mlflow["environment"]["AWS_ACCESS_KEY_ID"] == store["MINIO_ROOT_USER"]
    assert mlflow["environment"]["AWS_SECRET_ACCESS_KEY"] == store["MINIO_ROOT_PASSWORD"]
    assert "create-bucket" in depends_on(mlflow)


def test_the_trainer_logs_to_the_mlflow_service_under_a_host_name_it_allows():
    words = command_words(SERVICES["mlflow"])
    allowed = words[words.index("--allowed-hosts") + 1].split(",")
    uri = next(w.split("=", 1)[1] for w in command_words(SERVICES["trainer"]) if w.startswith("tracking.uri="))
    assert urlsplit(uri).netloc in allowed and urlsplit(uri).hostname == "mlflow"
    assert SERVICES["trainer"]["build"]["dockerfile"] == "docker/Dockerfile"  # the CPU image


def test_named_volumes_are_declared():
    declared = set(COMPOSE.get("volumes") or {})
    used = {str(volume).split(":")[0] for service in SERVICES.values() for volume in service.get("volumes", [])}
    named = {volume for volume in used if not volume.startswith((".", "/", "~"))}
    assert named and named <= declared, named - declared
    assert {"postgres", "minio"} <= {name for name, s in SERVICES.items() if s.get("volumes")}  # data survives


def makefile_install_target() -> str:
    """The directory `make install` installs the project from (`-e ".[test]"` -> `.`)."""
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line and "-e" in line)
    words = shlex.split(line)
    spec = words[words.index("-e") + 1]
    return spec.split("[", 1)[0]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfiles_install_the_project_from_the_source_tree_like_make(dockerfile):
    """Both images install the project from its own pyproject.toml, as `make install` does (without the
    editable flag and the test extra, which an image does not need), so they cannot drift from it."""
    lines = (DOCKER / dockerfile).read_text().splitlines()
    target = makefile_install_target()
    installs = [shlex.split(line.split("RUN", 1)[1]) for line in lines if line.startswith("RUN") and "pip install" in line]
    assert any(words[-1] == target for words in installs), (dockerfile, installs)
    assert "COPY pyproject.toml README.md ./" in lines and "COPY src src" in lines and "COPY conf conf" in lines


def test_the_gpu_image_trains_keras_on_jax_with_cuda():
    text = (DOCKER / "Dockerfile.gpu").read_text()
    assert re.search(r'pip install [^\n]*"jax\[cuda12\]"', text) and "ENV KERAS_BACKEND=jax" in text
    assert text.splitlines()[-1] == 'ENTRYPOINT ["tini", "--", "python", "-m", "runner"]'  # as the CPU image
    assert "USER unetlab" in text
