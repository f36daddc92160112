"""model_uri= from a real MLflow registry: the .keras file and preprocessing are read, the pickled python
model never is (its pickle here would create a marker file), and bad URIs fail as one line."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from helpers import register_model, run_runner, shapes_dataset

pytestmark = pytest.mark.slow


class _Payload:
    """Unpickling it creates `marker`: what a hostile python_model.pkl could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A tiny model registered as models:/guarded/1 (alias champion) whose python_model.pkl is hostile."""
    import keras

    root = tmp_path_factory.mktemp("registry")
    model = keras.Sequential([keras.Input((32, 32, 1)),
                              keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    uri, client, run = register_model(root, model, "guarded")
    client.set_registered_model_alias("guarded", "champion", "1")
    marker = root / "unpickled"
    stored = Path(client.get_model_version_download_uri("guarded", "1"))
    (stored / "python_model.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    return root, uri, run.info.run_id, model.get_weights(), marker


def _load(make_config, root, uri, model_uri):
    from runner.model_source import load_model_source

    return load_model_source(make_config(["task=predict", f"model_uri={model_uri}", f"tracking.uri={uri}",
                                          "predict.input=x", f"output_dir={root}/out"]))


@pytest.mark.parametrize("model_uri", ["models:/guarded/1", "models:/guarded@champion", "models:/guarded/latest"])
def test_registered_model_loads_its_keras_file_and_never_its_pickle(registry, make_config, monkeypatch, model_uri):
    import cloudpickle
    import mlflow

    root, uri, run_id, weights, marker = registry

    def refuse(*args, **kwargs):
        raise AssertionError("the pickled python model was loaded")

    for module, name in [(cloudpickle, "load"), (cloudpickle, "loads"), (pickle, "load"), (pickle, "loads"),
                         (mlflow.pyfunc, "load_model")]:
        monkeypatch.setattr(module, name, refuse)
    loaded = _load(make_config, root, uri, model_uri)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.model.get_weights(), weights))
    preprocessing = loaded.preprocessing
    assert (preprocessing.channels, preprocessing.num_classes, preprocessing.tile_size) == (1, 1, 32)
    assert loaded.source_run_id == run_id and loaded.description == model_uri
    assert not marker.exists()


@pytest.mark.parametrize("model_uri, reason", [
    ("models:/guarded/9", "Model Version (name=guarded, version=9) not found"),
    ("models:/missing/1", "Model Version (name=missing, version=1) not found"),
    ("models:/guarded@nope", "alias nope not found"),
    ("models:/missing/latest", "registered model 'missing' has no versions"),
    ("models:/foreign/1", "it is not a unetlab model"),
])
def test_unknown_or_foreign_versions_fail_as_one_line_naming_the_uri(registry, make_config, model_uri, reason):
    import mlflow

    from unetlab.errors import DataError

    root, uri, *_ = registry
    client = mlflow.MlflowClient(uri)
    if not client.search_registered_models("name='foreign'"):  # a version whose files are not a unetlab model
        (root / "foreign").mkdir()
        (root / "foreign" / "MLmodel").write_text("flavors:\n  sklearn: {}\n")
        client.create_registered_model("foreign")
        client.create_model_version("foreign", str(root / "foreign"))
    with pytest.raises(DataError) as error:
        _load(make_config, root, uri, model_uri)
    message = str(error.value)
    assert message.startswith(f"model_uri={model_uri} cannot be loaded from tracking.uri={uri}: ")
    assert reason in message and "\n" not in message


def test_model_uri_that_is_not_models_scheme_is_a_config_error(registry, make_config):
    from unetlab.errors import ConfigError

    root, uri, *_ = registry
    with pytest.raises(ConfigError, match=r"model_uri=models:/guarded must be models:/NAME/VERSION, "
                                          r"models:/NAME@ALIAS or models:/NAME/latest"):
        _load(make_config, root, uri, "models:/guarded")


def test_predict_and_evaluate_from_the_registry_never_unpickle(registry, tmp_path):
    root, uri, _, _, marker = registry
    images, masks = shapes_dataset(tmp_path / "data", 2, (40, 36))
    common = ["model_uri=models:/guarded@champion", f"tracking.uri={uri}"]
    predicted = run_runner("task=predict", *common, f"predict.input={images}", "predict.output=out", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").glob("s?.png")) == ["s0.png", "s1.png"]
    evaluated = run_runner("task=evaluate", *common, "data=folder", f"data.images={images}", f"data.masks={masks}",
                           "evaluate.output=eval", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert not marker.exists()


@pytest.fixture(scope="module")
def member_runs(tmp_path_factory):
    """Three runs with a tiny checkpoint each: `a` and `b` binary (b normalised with its own dataset
    statistics), `c` with 3 classes."""
    import keras
    import mlflow

    from unetlab.models import build_unet
    from unetlab.preprocessing import Preprocessing

    root = tmp_path_factory.mktemp("members")
    uri = f"sqlite:///{root}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("unetlab", artifact_location=str(root / "artifacts"))
    members = {"a": (1, {}), "b": (1, {"normalize": "dataset", "mean": [0.4], "std": [0.2]}), "c": (3, {})}
    runs = {}
    for seed, (name, (num_classes, normalize)) in enumerate(members.items()):
        folder = root / name
        folder.mkdir()
        keras.utils.set_random_seed(seed)
        build_unet((None, None, 1), num_classes, depth=1, filters=2).save(folder / "best.keras")
        Preprocessing(channels=1, num_classes=num_classes, tile_size=32, **normalize).save(
            folder / Preprocessing.FILENAME)
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "checkpoints")
        client.set_terminated(run.info.run_id)
        runs[name] = run.info.run_id
    return root, uri, runs


def _sources(make_config, member_runs, run_id):
    from runner.model_source import load_model_sources

    root, uri, _ = member_runs
    return load_model_sources(make_config(["task=predict", f"run_id={run_id}", f"tracking.uri={uri}",
                                           "predict.input=x", f"output_dir={root}/out"]))


def test_an_ensemble_loads_one_model_per_run_each_with_its_own_preprocessing(make_config, member_runs):
    from runner.model_source import describe, source_tags

    a, b = member_runs[2]["a"], member_runs[2]["b"]
    members = _sources(make_config, member_runs, f"[{a},{b}]")
    assert [member.source_run_id for member in members] == [a, b]
    assert [member.preprocessing.normalize for member in members] == ["scale", "dataset"]
    assert members[1].preprocessing.mean == [0.4]
    assert describe(members) == f"ensemble of 2 models: runs {a}, {b}"
    assert source_tags(members) == {"model_source": describe(members), "ensemble_size": "2",
                                    "ensemble_run_ids": f"{a},{b}"}
    (single,) = _sources(make_config, member_runs, f"[{a}]")
    assert source_tags([single]) == {"model_source": f"run {a}", "ensemble_size": "1", "source_run_id": a}


def test_ensemble_members_must_agree_on_classes_and_each_be_a_live_run(make_config, member_runs):
    from unetlab.errors import ConfigError, DataError

    runs = member_runs[2]
    with pytest.raises(ConfigError, match=rf"^run_id: runs {runs['a']} and {runs['c']} cannot form an ensemble: "
                                          rf"run {runs['a']} has num_classes=1, run {runs['c']} has num_classes=3$"):
        _sources(make_config, member_runs, f"[{runs['a']},{runs['b']},{runs['c']}]")
    with pytest.raises(DataError, match=r"^run_id=0123456789abcdef is not a run in tracking.uri="):
        _sources(make_config, member_runs, f"[{runs['a']},0123456789abcdef]")


def test_a_single_model_source_refuses_an_ensemble(make_config, member_runs):
    from runner.model_source import load_model_source
    from unetlab.errors import ConfigError

    root, uri, runs = member_runs
    config = make_config(["task=predict", f"run_id=[{runs['a']},{runs['b']}]", f"tracking.uri={uri}",
                          "predict.input=x", f"output_dir={root}/out"])
    with pytest.raises(ConfigError, match=rf"^run_id=\[{runs['a']},{runs['b']}\] names 2 runs where one model"):
        load_model_source(config)


def test_a_checkpoint_without_its_preprocessing_is_refused_naming_the_missing_file(make_config, tmp_path):
    import keras

    from runner.model_source import load_model_source
    from unetlab.errors import ConfigError
    from unetlab.preprocessing import Preprocessing

    keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(1, 1, activation="sigmoid")]).save(
        tmp_path / "best.keras")
    config = make_config(["task=predict", f"checkpoint={tmp_path}/best.keras", "predict.input=x",
                          f"output_dir={tmp_path}/out"])
    with pytest.raises(ConfigError) as error:  # it used to guess normalize=scale and full-resolution tiles
        load_model_source(config)
    message = str(error.value)
    assert message.startswith(f"checkpoint='{tmp_path}/best.keras' has no preprocessing.json beside it "
                              f"({tmp_path}/preprocessing.json is missing): ")
    assert "run_id=RUN_ID" in message and "\n" not in message
    Preprocessing(channels=1, num_classes=1, normalize="minmax", tile_size=32).save(tmp_path / Preprocessing.FILENAME)
    loaded = load_model_source(config)
    assert (loaded.preprocessing.normalize, loaded.preprocessing.tile_size) == ("minmax", 32)
    assert loaded.description == f"{tmp_path}/best.keras" and loaded.source_run_id is None
