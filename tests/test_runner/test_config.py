"""Config composition through Hydra's compose API, and config errors as a user sees them."""

import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from runner.schema import SCHEMAS, Config
from runner.settings import to_config
from runner.tasks.train import build_model, compile_model
from unetlab.errors import ConfigError

from helpers import ROOT, run_runner

# Keys each option needs beside its own defaults to form a valid config.
NEEDS = {
    ("loss", "ce"): ["data.num_classes=3"],
    ("loss", "ce_dice"): ["data.num_classes=3"],
}


def group_options():
    conf = resources.files("runner.conf")
    return [(group, option.name[:-5]) for group in SCHEMAS
            for option in sorted((conf / group).iterdir(), key=lambda p: p.name) if option.name.endswith(".yaml")]


def test_every_schema_option_has_a_yaml_file():
    assert {(group, option) for group, option in group_options()} == {
        (group, option) for group, options in SCHEMAS.items() for option in options}


@pytest.mark.parametrize("group, option", group_options())
def test_every_option_of_every_group_composes_and_builds(compose, group, option, tmp_path):
    overrides = [f"{group}={option}", "data.image_size=32", "model.depth=2", "model.filters=2",
                 f"output_dir={tmp_path}", *NEEDS.get((group, option), [])]
    if (group, option) == ("data", "folder"):
        overrides += [f"data.images={tmp_path}", f"data.masks={tmp_path}"]
    if (group, option) == ("data", "isbi2012"):
        overrides += [f"data.root={tmp_path}"]
    config = to_config(compose(overrides))
    assert isinstance(config, Config)
    config.augment.transforms()  # the library accepts the augmentation settings
    model = build_model(config)
    compile_model(model, config, total_steps=10)
    x = np.zeros((1, 32, 32, config.data.channels), np.float32)
    y = np.zeros((1, 32, 32, 1), np.float32)
    assert np.isfinite(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])


@pytest.mark.parametrize("preset", ["unet_paper", "classic_keras_unet"])
def test_experiment_presets_compose_and_validate(compose, preset, tmp_path):
    config = to_config(compose([f"+experiment={preset}", f"output_dir={tmp_path}"]))
    assert config.model.filters == 64


def test_paper_preset_builds_the_paper_network(compose, tmp_path):
    config = to_config(compose(["+experiment=unet_paper", f"output_dir={tmp_path}"]))
    model = build_model(config)
    assert model.input_shape == (None, 572, 572, 1) and model.output_shape == (None, 388, 388, 2)


@pytest.mark.parametrize("overrides, message", [
    (["data.image_size=100"], "data.image_size=100: image size 100 is not divisible by 2**depth=16"),
    (["loss=ce"], "loss=ce needs data.num_classes >= 2"),
    (["loss=bce", "data.num_classes=3"], "loss=bce needs data.num_classes=1"),
    (["trainer.monitor=val_f1"], "trainer.monitor='val_f1' is not a reported metric"),
    (["model.dropout=1.0"], "model.dropout must be in [0, 1). Received: dropout=1.0"),
    (["data=folder"], "data.images is required"),
    (["data=folder", "data.images=a", "data.masks=b", "data.val_images=c"], "data.val_images and data.val_masks"),
])
def test_cross_field_rules_name_the_key(compose, overrides, message, tmp_path):
    with pytest.raises(ConfigError) as error:
        to_config(compose([*overrides, f"output_dir={tmp_path}"]))
    assert message in str(error.value)


@pytest.mark.parametrize("override, expected", [
    ("model.filtres=64", "Key 'filtres' not in 'ModelConfig'"),
    ("model.filters=abc", "model.filters: Value 'abc' of type 'str' could not be converted to Integer"),
    ("model.pooling=avg", "Invalid value 'avg', expected one of [max, conv]"),
    ("loss=dcie", "Could not find 'loss/dcie' (options: bce, bce_dice, ce, ce_dice, dice, focal, tversky)"),
    ("data.image_size=100", "data.image_size=100"),
    ("data=folder", "data.images is required"),
    ("hparams_search=optuna", "hparams_search=optuna is a search over many runs: add -m"),
    ("-m hparams_search=optuna hparams_search.n_trials=0", "hparams_search.n_trials must be >= 1"),
    ("-m hparams_search=optuna model.filters=choice(1,", "model.filters=choice(1,: no viable alternative"),
    ("-m +experiment=ray_cluster", "pip install 'unetlab[ray]'"),
    ("-m hparams_search=optuna model.filtres=2,4", "Key 'filtres' not in 'ModelConfig'"),
    ("-m hparams_search=optuna loss=dice,dcie", "Could not find 'loss/dcie'"),
    ("model.filters=2,4", "to sweep over it add -m"),
])
def test_bad_config_fails_with_one_line_and_no_traceback(override, expected, tmp_path):
    result = run_runner(*override.split(" "), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()  # nothing tracked


def test_help_and_config_errors_answer_without_importing_tensorflow(tmp_path):
    probe = ("import sys\nfrom runner.__main__ import main\nsys.argv = ['runner', '--cfg', 'job']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\nprint('tensorflow' in sys.modules, 'mlflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"
    assert "model:" in result.stdout and "filters: 32" in result.stdout


def test_configs_ship_in_the_package_data_of_the_wheel():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert project["package-dir"]["runner.conf"] == "conf"
    assert project["package-dir"]["runner.experiments"] == "experiments"


@pytest.mark.parametrize("preset", ["none", "basic", "paper"])
def test_augment_yaml_options_equal_the_library_presets(compose, preset, tmp_path):
    from unetlab.data.augment import PRESETS

    config = to_config(compose([f"augment={preset}", f"output_dir={tmp_path}"]))
    assert config.augment.transforms() == PRESETS[preset]


def test_bad_augment_value_names_the_key(compose, tmp_path):
    config = to_config(compose(["augment=paper", "augment.scale=[1.2,0.8]", f"output_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"augment.scale must be \(low, high\) with 0 < low <= high"):
        config.augment.transforms()
