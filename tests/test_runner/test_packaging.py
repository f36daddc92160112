"""The wheel builds without warnings from our metadata, ships every config, and its configs are
found from a regular (wheel) install too, not only from the source tree."""

import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import version

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory):
    """(wheel path, pip's output) of `pip wheel .`: in this environment when its setuptools is new
    enough for pyproject.toml (no download), else in pip's isolated build environment."""
    wheels = tmp_path_factory.mktemp("wheels")
    setuptools = tuple(int(part) for part in re.findall(r"\d+", version("setuptools"))[:2])
    isolation = ["--no-build-isolation"] if setuptools >= (77, 0) else []  # 77: [build-system] requires
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(wheels),
                             str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return next(wheels.glob("unetlab-*.whl")), result.stdout + result.stderr


def test_wheel_builds_without_warnings_from_our_metadata(built_wheel):
    _, output = built_wheel
    warnings = [line for line in output.splitlines() if "warning" in line.lower()]
    assert not warnings, output  # e.g. SetuptoolsDeprecationWarning: `project.license` as a TOML table


def test_wheel_holds_every_config_and_experiment_yaml(built_wheel):
    wheel, _ = built_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = ROOT / "conf"
    expected = {f"runner/conf/{path.relative_to(conf).as_posix()}" for path in conf.rglob("*.yaml")}
    expected |= {f"runner/experiments/{path.name}" for path in (ROOT / "experiments").glob("*.yaml")}
    assert {"runner/conf/config.yaml", "runner/conf/model/unet.yaml", "runner/experiments/unet_paper.yaml"} <= expected
    assert expected <= names, sorted(expected - names)


def test_wheel_install_finds_configs_and_presets_from_any_directory(built_wheel, tmp_path):
    wheel, _ = built_wheel
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = ("import sys, runner\nprint(runner.__file__)\nfrom runner.__main__ import main\n"
             "sys.argv = ['runner', '+experiment=unet_paper', '--cfg', 'job']\nmain()")
    result = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(target))  # the wheel's copy, not the source tree
    assert "padding: valid" in result.stdout and "filters: 64" in result.stdout


def test_docker_image_runs_the_trainer_under_tini_as_a_non_root_user():
    lines = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    assert lines[-1] == 'ENTRYPOINT ["tini", "--", "python", "-m", "runner"]'  # SIGTERM reaches python
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any("apt-get install" in line and " tini" in line for line in lines)
