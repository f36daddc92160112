"""resume=RUN_ID and +from_run=RUN_ID: real runs in subprocesses, a real MLflow SQLite store."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from helpers import TINY, empty_store, final_state, run_runner
from runner import logged_run
from runner.logged_run import typed
from runner.schema import CONFIG_VERSION, SCHEMAS, NamedFolderDataConfig, TrainerConfig
from runner.tracking import FITTED_PARAM_PREFIX
from runner.settings import to_config
from unetlab.checkpoints import Checkpoints
from unetlab.errors import ConfigError

pytestmark = pytest.mark.slow

EPOCHS = 6  # killed after epoch 2: 4 more epochs of the resumed run to compare
DETERMINISTIC = [o for o in TINY if not o.startswith("trainer.epochs")] + [
    f"trainer.epochs={EPOCHS}", "trainer.deterministic=true", "trainer.verbose=2"]


def runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("unetlab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def kill_after_second_epoch(cwd: Path, *args: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    for line in process.stdout:
        if f"epoch 2/{EPOCHS}" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGKILL)  # no handler runs: the run stays RUNNING
    process.wait(timeout=60)


def test_a_run_killed_with_sigkill_resumes_on_another_directory_exactly_as_an_uninterrupted_run(tmp_path):
    reference_dir, first_dir, second_dir = (tmp_path / name for name in ("reference", "first", "second"))
    for directory in (reference_dir, first_dir, second_dir):
        directory.mkdir()
    result = run_runner(*DETERMINISTIC, cwd=reference_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    store = f"sqlite:///{first_dir}/mlflow.db"
    kill_after_second_epoch(first_dir, *DETERMINISTIC, f"tracking.uri={store}")
    [killed] = runs(store)
    assert killed.info.status == "RUNNING"
    shutil.rmtree(first_dir / "outputs")  # only the tracking store (and its artifacts) carries the state

    result = run_runner(f"resume={killed.info.run_id}", f"tracking.uri={store}", cwd=second_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming run" in result.stdout
    [resumed] = runs(store)
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    client = MlflowClient(store)
    for metric in ("loss", "val_loss", "learning_rate"):
        assert [m.step for m in client.get_metric_history(resumed.info.run_id, metric)] == list(range(EPOCHS))

    reference_client = MlflowClient(f"sqlite:///{reference_dir}/mlflow.db")
    [reference] = runs(f"sqlite:///{reference_dir}/mlflow.db")
    ours = final_state(client, resumed.info.run_id, tmp_path / "ours")
    theirs = final_state(reference_client, reference.info.run_id, tmp_path / "theirs")
    assert ours.epoch == theirs.epoch == EPOCHS - 1
    for mine, expected in zip(ours.arrays, theirs.arrays):  # weights, Adam moments and step: equal
        np.testing.assert_array_equal(mine, expected)
    reference_losses = [m.value for m in reference_client.get_metric_history(reference.info.run_id, "val_loss")]
    assert [m.value for m in client.get_metric_history(resumed.info.run_id, "val_loss")] == reference_losses


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("logged")
    result = run_runner(*TINY, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs(f"sqlite:///{root}/mlflow.db")
    return root, run.info.run_id


def test_resuming_a_finished_run_does_nothing_unless_more_epochs_are_asked_for(finished):
    root, run_id = finished
    uri = f"sqlite:///{root}/mlflow.db"
    result = run_runner(f"resume={run_id}", cwd=root)
    assert result.returncode == 0 and "is FINISHED after 2 epochs: nothing to do" in result.stdout
    result = run_runner(f"resume={run_id}", "trainer.epochs=4", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs(uri)
    assert run.info.status == "FINISHED"
    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run_id, "val_dice")] == [0, 1, 2, 3]
    # The cosine schedule of 2 epochs is not restarted nor stretched to 4: it ends where it would
    # have, and the extra epochs train at trainer.min_lr (before: 4 epochs' decay, back up at epoch 3).
    rates = [m.value for m in sorted(client.get_metric_history(run_id, "learning_rate"), key=lambda m: m.step)]
    assert len(rates) == 4 and all(later <= earlier for earlier, later in zip(rates, rates[1:])), rates
    assert rates[1:] == pytest.approx([float(run.data.params["trainer.min_lr"])] * 3, rel=1e-3)


@pytest.mark.parametrize("args, expected", [
    (["model.filters=8"], "cannot take model.filters (allowed: trainer.epochs"),
    (["data=folder"], "cannot take data (allowed"),
])
def test_resume_refuses_overrides_that_change_what_was_trained(finished, args, expected):
    root, run_id = finished
    result = run_runner(f"resume={run_id}", *args, cwd=root)
    assert result.returncode == 2 and expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["resume", "+from_run"])
def test_an_unknown_run_id_is_one_line(finished, key):
    root, _ = finished
    result = run_runner(f"{key}=0123456789abcdef", cwd=root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {key.lstrip('+')}=0123456789abcdef is not a run in tracking.uri=sqlite:///mlflow.db")


def test_from_run_recomposes_the_logged_config_with_overrides_on_top_in_a_new_tagged_run(finished):
    root, run_id = finished
    result = run_runner(f"+from_run={run_id}", "model.filters=8", "trainer.epochs=1", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{root}/mlflow.db"
    new = next(run for run in runs(uri) if run.info.run_id != run_id and run.data.tags.get("from_run"))
    old = MlflowClient(uri).get_run(run_id)
    assert new.data.tags["from_run"] == run_id and new.info.status == "FINISHED"
    assert new.data.params["model.filters"] == "8" and new.data.params["trainer.epochs"] == "1"
    changed = {key for key, value in new.data.params.items() if old.data.params.get(key) != value
               and not key.startswith(FITTED_PARAM_PREFIX)}  # what each run fits after training differs
    assert changed == {"model.filters", "trainer.epochs", "output_dir", "tracking.tags.from_run"}


def test_a_training_state_that_does_not_fit_the_model_is_one_line(tmp_path):
    """A state saved by other model code (here: another run's, of a smaller model) is refused by name."""
    small = run_runner(*TINY, "model.filters=2", "tracking.run_name=small", cwd=tmp_path)
    big = run_runner(*TINY, "tracking.run_name=big", cwd=tmp_path)
    assert small.returncode == big.returncode == 0, small.stderr[-2000:] + big.stderr[-2000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    by_name = {run.info.run_name: run for run in runs(uri)}
    client = MlflowClient(uri)
    for name in Checkpoints.STATE_SLOTS:  # the small run's state in both slots of the big run
        path = final_state(client, by_name["small"].info.run_id, tmp_path / name).source
        client.log_artifact(by_name["big"].info.run_id, str(path.rename(path.with_name(name))), "checkpoints")
    result = run_runner(f"resume={by_name['big'].info.run_id}", "trainer.epochs=3", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: resume={by_name['big'].info.run_id}: the saved training state does not match this model")


# ---------------------------------------------------------------- configs logged by older releases
def logged_v1() -> dict:
    """The config.yaml of a run logged before configs had a version (fixtures/config_v1.yaml)."""
    return yaml.safe_load((Path(__file__).parent / "fixtures" / "config_v1.yaml").read_text())


def fake_logged_run(root: Path, values: dict) -> str:
    """A task=train run in `root`/mlflow.db whose config.yaml artifact is `values` (nothing trained)."""
    shutil.copyfile(empty_store(), root / "mlflow.db")
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.create_experiment("unetlab", artifact_location=str(root / "mlruns"))
    run_id = client.create_run(experiment, tags={"task": "train"}).info.run_id
    client.log_text(run_id, yaml.safe_dump(values, sort_keys=False), "config.yaml")
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture
def trainer_key_added(monkeypatch):
    """trainer=default as a later release would have it: one key more (`warmup_epochs`, default 3), in
    SCHEMAS and in the schema Hydra composes the option from; calling it adds the key again."""
    from hydra.core.config_store import ConfigStore

    @dataclasses.dataclass
    class WarmupTrainerConfig(TrainerConfig):
        warmup_epochs: int = 3

    def add_key():
        monkeypatch.setitem(SCHEMAS["trainer"], "default", WarmupTrainerConfig)
        ConfigStore.instance().store(group="schema/trainer", name="default", node=WarmupTrainerConfig)

    add_key()
    yield add_key
    ConfigStore.instance().store(group="schema/trainer", name="default", node=TrainerConfig)


def test_a_config_logged_before_versions_is_typed_as_version_1_with_its_values():
    config = to_config(typed(logged_v1(), "+from_run=R"))
    assert config.config_version == CONFIG_VERSION == 1
    assert (config.model.filters, config.trainer.epochs, config.loss.name) == (4, 2, "bce_dice")


def test_a_logged_config_is_typed_after_a_key_is_added_to_its_group_with_that_options_default(trainer_key_added):
    config = to_config(typed(logged_v1(), "+from_run=R"))
    assert config.trainer.warmup_epochs == 3 and config.trainer.epochs == 2


def test_a_logged_isbi2012_group_is_typed_as_isbi2012_though_its_name_is_folder(compose):
    values = logged_v1()
    values["data"] = OmegaConf.to_container(compose(["data=isbi2012", "data.root=/isbi"]).data, resolve=True)
    del values["data"]["foreground_oversample"]  # a key isbi2012 did not have then
    root = typed(values, "+from_run=R")
    assert OmegaConf.get_type(root.data) is NamedFolderDataConfig
    assert root.data.masks == "/isbi/label" and root.data.foreground_oversample == 0.33


def test_an_older_config_version_is_migrated_before_it_is_typed(monkeypatch):
    """A fake version 2 that renamed model.base_filters to model.filters and removed model.legacy."""
    old = logged_v1()
    old["config_version"] = 1
    old["model"]["base_filters"] = old["model"].pop("filters")
    old["model"]["legacy"] = True
    monkeypatch.setattr(logged_run, "CONFIG_VERSION", 2)
    with pytest.raises(ConfigError, match="takes: model.base_filters, model.legacy .renamed or removed"):
        typed(old, "+from_run=R")
    monkeypatch.setitem(logged_run.MIGRATIONS, 1, {"renamed": {"model.base_filters": "model.filters"},
                                                    "removed": ["model.legacy"]})
    root = typed(old, "+from_run=R")
    assert root.model.filters == 4 and "legacy" not in root.model and root.config_version == 2


def test_from_run_of_a_run_logged_without_a_key_that_exists_today_trains_with_its_default(tmp_path):
    old = logged_v1()
    del old["trainer"]["jit_compile"], old["tracking"]["num_predictions"]  # default null; 4 (logged: 2)
    run_id = fake_logged_run(tmp_path, old)
    result = run_runner(f"+from_run={run_id}", "trainer.epochs=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    [new] = [run for run in runs(uri) if run.data.tags.get("from_run") == run_id]
    assert new.info.status == "FINISHED"
    assert new.data.params["trainer.jit_compile"] == "None" and new.data.params["tracking.num_predictions"] == "4"
    (tmp_path / "new").mkdir()
    logged = yaml.safe_load(Path(MlflowClient(uri).download_artifacts(
        new.info.run_id, "config.yaml", str(tmp_path / "new"))).read_text())
    assert logged["config_version"] == CONFIG_VERSION and logged["model"]["filters"] == 4


@pytest.mark.parametrize("change, expected", [
    ({"model": {"name": "transformer"}},
     f"its model.name=transformer is no model option of this version ({', '.join(SCHEMAS['model'])})"),
    ({"config_version": CONFIG_VERSION + 1}, f"its config_version={CONFIG_VERSION + 1} is newer than this unetlab "
                                             f"reads (up to config_version={CONFIG_VERSION}): upgrade unetlab"),
])
def test_a_logged_config_of_an_unknown_option_or_a_newer_version_is_one_line(tmp_path, change, expected):
    values = logged_v1()
    for key, value in change.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    run_id = fake_logged_run(tmp_path, values)
    result = run_runner(f"+from_run={run_id}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: from_run={run_id}: {expected}")


def test_a_run_logged_before_a_key_was_added_resumes_after_it_was(tmp_path, trainer_key_added, monkeypatch):
    """The run trains (and logs its config) while trainer=default has no `warmup_epochs`; a later release adds it;
    the run still resumes from its training state, with the new key at its default."""
    from hydra.core.config_store import ConfigStore

    SCHEMAS["trainer"]["default"] = TrainerConfig  # this release first (the fixture restores SCHEMAS afterwards)
    ConfigStore.instance().store(group="schema/trainer", name="default", node=TrainerConfig)
    result = run_runner(*TINY, "trainer.epochs=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    [run] = runs(uri)
    (tmp_path / "logged").mkdir()
    logged = yaml.safe_load(Path(MlflowClient(uri).download_artifacts(
        run.info.run_id, "config.yaml", str(tmp_path / "logged"))).read_text())
    assert "warmup_epochs" not in logged["trainer"]

    trainer_key_added()  # the later release: trainer=default takes `warmup_epochs`
    from runner import builders

    trained_with, check_data = [], builders.checked_data
    monkeypatch.setattr(builders, "checked_data", lambda config: trained_with.append(config) or check_data(config))
    result = run_runner(f"resume={run.info.run_id}", "trainer.epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [config] = trained_with
    assert (config.trainer.warmup_epochs, config.trainer.epochs, config.resume) == (3, 2, run.info.run_id)
    [resumed] = runs(uri)
    assert resumed.info.status == "FINISHED"
    assert [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "val_dice")] == [0, 1]
