"""runner.serving: the pyfunc model's pip requirements, and (UNETLAB_VENV_TESTS=1) the model served
from a fresh virtual environment holding those requirements and nothing else."""

import os
import subprocess
import sys
import time
from importlib import metadata

import numpy as np
import pytest
from packaging.requirements import Requirement

from helpers import register_model
from runner.serving import pip_requirements
from unetlab.errors import ConfigError

LINUX_X86 = {"sys_platform": "linux", "platform_machine": "x86_64"}
MACOS_ARM = {"sys_platform": "darwin", "platform_machine": "arm64"}


def names(requirements):
    return [Requirement(line).name for line in requirements]


def test_requirements_are_unetlabs_core_dependencies_pinned_to_the_installed_versions():
    requirements = pip_requirements(LINUX_X86)
    assert {"scipy", "keras", "mlflow", "numpy", "pillow"} <= set(names(requirements))
    assert not {"pytest", "jax", "mkdocs", "ray"} & set(names(requirements))  # extras left out
    for line in requirements:
        requirement = Requirement(line)
        assert requirement.marker is None and str(requirement.specifier).startswith("==")
    assert f"scipy=={metadata.version('scipy')}" in requirements


def test_requirements_honour_the_markers_of_the_tensorflow_distribution():
    linux, macos = names(pip_requirements(LINUX_X86)), names(pip_requirements(MACOS_ARM))
    assert "tensorflow-cpu" in linux and "tensorflow" not in linux
    assert "tensorflow" in macos and "tensorflow-cpu" not in macos
    version = metadata.version("tensorflow-cpu") if "tensorflow-cpu" in linux else None
    if version:  # this machine installs tensorflow-cpu, so its own requirements name it
        assert f"tensorflow-cpu=={version}" in pip_requirements()


def test_without_unetlabs_metadata_the_requirements_are_one_line_saying_to_install_it(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)  # as when run from src/ on PYTHONPATH
    with pytest.raises(ConfigError, match=r"^unetlab is not installed .*pip install -e \.`$"):
        pip_requirements()


@pytest.mark.slow
@pytest.mark.venv
@pytest.mark.skipif(os.environ.get("UNETLAB_VENV_TESTS") != "1",
                    reason="builds a virtual environment and installs tensorflow (minutes): UNETLAB_VENV_TESTS=1")
def test_registered_model_predicts_in_a_fresh_venv_built_from_its_logged_requirements(tmp_path):
    from unetlab.models import build_unet

    uri, client, _ = register_model(tmp_path, build_unet((32, 32, 1), 1, depth=2, filters=4), "fresh")
    stored = client.get_model_version_download_uri("fresh", "1")
    requirements = os.path.join(stored, "requirements.txt")
    logged = [line.strip() for line in open(requirements) if line.strip() and not line.startswith("#")]
    assert set(pip_requirements()) <= set(logged), logged

    started = time.monotonic()
    venv = tmp_path / "venv"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "-r", requirements], capture_output=True,
                             text=True, timeout=3600, env=env)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = ("import numpy as np, mlflow\n"
             f"mlflow.set_tracking_uri('{uri}')\n"
             "mask = mlflow.pyfunc.load_model('models:/fresh/1').predict(np.full((45, 77, 1), 0.8, np.float32))\n"
             "import unetlab\n"
             "print(mask.shape, mask.dtype, set(np.unique(mask).tolist()) <= {0, 1}, unetlab.__file__)")
    served = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert served.returncode == 0, served.stderr[-3000:]
    shape, dtype, binary, location = served.stdout.strip().splitlines()[-1].rsplit(" ", 3)
    assert (shape, dtype, binary) == ("(45, 77)", "uint8", "True"), served.stdout[-2000:]
    assert str(tmp_path) in location and "site-packages" not in location  # unetlab from the model's own code
    print(f"fresh venv: installed and served in {time.monotonic() - started:.0f} s")


def test_the_pyfunc_model_applies_the_postprocessing_its_training_recorded():
    """params postprocess=auto (the default): the watershed of the model's preprocessing.json cuts the mask
    (its lines become class 1, the membrane); none, or a model without a record: the network's mask. The
    network here predicts membrane = 1 - image, and the image is two cells merged through a membrane gap."""
    import keras

    from runner.serving import SegmentationModel
    from unetlab.postprocess import Watershed
    from unetlab.preprocessing import Preprocessing

    cells = np.zeros((46, 89), np.float32)
    cells[3:43, 3:43] = cells[3:43, 46:86] = 1.0
    cells[21:25, 43:46] = 1.0  # the gap
    inputs = keras.Input((None, None, 1))
    served = SegmentationModel()
    served.model = keras.Model(inputs, keras.layers.Lambda(lambda x: 1.0 - x)(inputs))
    watershed = Watershed(threshold=0.5, h=2.0, sigma=0.0)
    served.preprocessing = Preprocessing(channels=1, num_classes=1, tile_size=16, postprocess=watershed.as_dict())
    raw = (cells < 0.5).astype(np.uint8)
    cut = served.predict(None, cells[..., None])
    assert np.all(cut[raw == 1] == 1) and cut[21:25, 43:46].any()  # a line through the gap, nothing else lost
    assert np.sum(cut != raw) < 10  # a 4-pixel cut (and a corner at most)
    np.testing.assert_array_equal(served.predict(None, cells[..., None], {"postprocess": "none"}), raw)
    served.preprocessing.postprocess = None
    np.testing.assert_array_equal(served.predict(None, cells[..., None]), raw)
    with pytest.raises(ValueError, match="params postprocess must be auto"):
        served.predict(None, cells[..., None], {"postprocess": "watershed"})
