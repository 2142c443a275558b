"""The package works outside this repository: a built wheel carries the config tree, its
installed command runs a job from any directory and picks up a user's own config dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_DATA = """\
# a user's own data config, kept in their project: a built-in choice with their settings
defaults:
  - synthetic
  - _self_
num_samples: 48
num_classes: 3
channels: 1
size: 16
image_size: 16
batch_size: 8
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed into a throwaway target dir."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy: building writes build/ and egg-info beside the sources
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist")]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=300)
    wheel = next((work / "dist").glob("transferlab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "transferlab/conf/train.yaml" in names
    assert "transferlab/conf/hydra/launcher/parallel.yaml" in names
    target = work / "site"
    install = [*pip, "install", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    return target


def run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONWARNINGS": "ignore"}
    script = [sys.executable, str(target / "bin" / "transferlab-train")]
    return subprocess.run(
        [*script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_installed_wheel_runs_a_job_with_a_user_config_dir(installed, tmp_path):
    project = tmp_path / "my_project"
    (project / "conf" / "data").mkdir(parents=True)
    (project / "conf" / "data" / "my_data.yaml").write_text(USER_DATA)
    res = run_installed(
        installed,
        project,
        "--config-dir",
        "conf",
        "data=my_data",
        "backbone=tiny",
        "backbone.weights=null",
        "trainer.accelerator=cpu",
        "+trainer.fast_dev_run=true",
        "print_config=false",
        "logger=none",
        "hydra.run.dir=run",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    config = (project / "run" / "config.yaml").read_text()
    assert "num_samples: 48" in config and "channels: 1" in config
    assert "test/acc" in json.loads((project / "run" / "metrics.json").read_text())
    # the job ran the installed copy, not this checkout's sources
    assert f"transferlab: {installed}" in run_python(installed, project, "import transferlab")


def run_python(target: Path, cwd: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(target)}
    code += "; print('transferlab:', transferlab.CONF_DIR.rsplit('/transferlab/', 1)[0])"
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
    return res.stdout
