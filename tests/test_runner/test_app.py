"""`python -m runner` as a user starts it: config mistakes are one line, exit 2, nothing tracked;
the config is checked before TensorFlow or MLflow is imported."""

import subprocess
import sys

import pytest

from helpers import run_runner

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("override, expected", [
    ("model.filtres=64", "Key 'filtres' not in 'UNetConfig'"),
    ("model.filters=abc", "model.filters: Value 'abc' of type 'str' could not be converted to Integer"),
    ("model.pooling=avg", "Invalid value 'avg', expected one of [max, conv]"),
    ("loss=dcie", "Could not find 'loss/dcie' (did you mean loss=dice?)"),
    ("data.image_size=100", "data.image_size=100"),
    ("data=folder", "data.images is required"),
    ("hparams_search=optuna", "hparams_search=optuna is a search over many runs: add -m"),
    ("-m hparams_search=optuna hparams_search.n_trials=0", "hparams_search.n_trials must be >= 1"),
    ("-m hparams_search=optuna model.filters=choice(1,", "model.filters=choice(1,: no viable alternative"),
    ("-m +experiment=ray_cluster", "pip install 'unetlab[ray]'"),
    ("-m hparams_search=optuna model.filtres=2,4", "Key 'filtres' not in 'UNetConfig'"),
    ("-m hparams_search=optuna loss=dice,dcie", "Could not find 'loss/dcie'"),
    ("model.filters=2,4", "to sweep over it add -m"),
])
def test_bad_config_fails_with_one_line_and_no_traceback(override, expected, tmp_path):
    result = run_runner(*override.split(" "), cwd=tmp_path, timeout=120, with_store=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()  # nothing tracked


@pytest.mark.parametrize("argv", [["--cfg", "job"], ["data.image_size=100"]])
def test_config_is_checked_without_importing_tensorflow_or_mlflow(tmp_path, argv):
    probe = (f"import sys\nfrom runner.__main__ import main\nsys.argv = ['runner', *{argv!r}]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\nprint('tensorflow' in sys.modules, 'mlflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"
    if argv[0] == "--cfg":
        assert "model:" in result.stdout and "filters: 32" in result.stdout
    else:
        assert "error: data.image_size=100" in result.stderr
