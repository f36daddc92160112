"""The tiny trained model that evaluate, predict and export tests share (one per test process)."""

import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, run_runner, shapes_dataset


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny model trained on 32x32 shapes, its run id, registered as models:/shapes/1."""
    root = tmp_path_factory.mktemp("inference")
    images, masks = shapes_dataset(root / "train", 8, (32, 32))
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    result = run_runner("data=folder", f"data.images={images}", f"data.masks={masks}", "data.val_fraction=0.25",
                        *tiny, "tracking.register_model=shapes", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])[0]
    return root, run.info.run_id, client
