"""The tiny trained models (under TensorFlow and under JAX) that evaluate, predict and export tests
share (one each per test process)."""

import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, run_runner, shapes_dataset


def train_on_shapes(root, *overrides: str, backend: str | None = None):
    """A tiny model trained on 32x32 shapes in `root`: (root, its run id, a client of its store)."""
    images, masks = shapes_dataset(root / "train", 8, (32, 32))
    result = run_runner("data=folder", f"data.images={images}", f"data.masks={masks}", "data.val_fraction=0.25",
                        *overrides, cwd=root, backend=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])[0]
    return root, run.info.run_id, client


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny model trained on 32x32 shapes, its run id, registered as models:/shapes/1."""
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    return train_on_shapes(tmp_path_factory.mktemp("inference"), *tiny, "tracking.register_model=shapes")


@pytest.fixture(scope="session")
def trained_under_jax(tmp_path_factory):
    """The same tiny model trained under KERAS_BACKEND=jax, compiled: under JAX a jitted step
    beats op-by-op dispatch even for this model (30 s against 41 s here)."""
    pytest.importorskip("jax")
    tiny = [o for o in TINY if not o.startswith(("data.num_", "trainer.run_eagerly="))]
    return train_on_shapes(tmp_path_factory.mktemp("inference-jax"), *tiny, backend="jax")
