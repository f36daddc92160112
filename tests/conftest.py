"""Shared fixtures: Hydra composition of the real `conf/`, tiny configs, MLflow stores under tmp_path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under KERAS_BACKEND=jax every process compiles each layer's initializer (about 1 s apiece on
# this CPU): the tests' JAX subprocesses share those compilations through JAX's persistent cache.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "unetlab-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# passed data checks (unetlab.data.check_cache) go to a folder of this session's, not the user's cache
os.environ.setdefault("UNETLAB_CACHE_DIR", tempfile.mkdtemp(prefix="unetlab-tests-cache-"))

from helpers import TINY  # noqa: E402


@pytest.fixture(scope="session")
def compose():
    """compose(overrides) -> DictConfig from the real conf/ through Hydra's compose API."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from runner.app import register

    register()
    with initialize_config_module(config_module="runner.conf", version_base="1.3"):
        yield lambda overrides=(): hydra_compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def make_config(compose):
    """make_config(overrides) -> the typed Config, converted as `app` converts it."""
    from runner.settings import to_config

    return lambda overrides=(): to_config(compose(overrides))


@pytest.fixture
def tiny_overrides(tmp_path, monkeypatch):
    """TINY plus an MLflow SQLite store and output directory under tmp_path (also the cwd)."""
    monkeypatch.chdir(tmp_path)
    return TINY + [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"output_dir={tmp_path}/out"]
