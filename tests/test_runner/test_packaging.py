"""The configs are found from a regular (wheel) install too, not only from the source tree."""

import os
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def test_wheel_install_finds_configs_and_presets_from_any_directory(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("unetlab-*.whl"))
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
