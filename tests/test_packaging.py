"""A built wheel, not only a checkout, carries what the code reads at run time: the default and
shipped configs, the A/B report template and the MLflow pyfunc model file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Run from the unpacked wheel, in a directory that is not a checkout: the package must find its
# configs by itself, and relative paths resolve against the working directory.
PROBE = """
import json, socialrec
from socialrec.features.paths import project_dir
from socialrec.training.config import CONFIG_DIR, load_config
cfg = load_config(["lastfm"], ["tracking.uri=sqlite:///x.db"])
print(json.dumps({"package": socialrec.__file__, "configs": str(CONFIG_DIR),
                  "project": str(project_dir()), "dataset": cfg["dataset"]["name"],
                  "template": (CONFIG_DIR.parent / "evaluation/templates/ab_report.html.j2")
                  .is_file()}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(REPO)], check=True, timeout=300)
    (path,) = out.glob("socialrec-*.whl")
    return path


def test_wheel_ships_configs_template_and_pyfunc_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO / "socialrec").as_posix()
               for p in (REPO / "socialrec/configs").rglob("*.yaml")}
    assert {f"socialrec/{s}" for s in shipped} <= names
    assert "socialrec/evaluation/templates/ab_report.html.j2" in names
    assert "socialrec/training/pyfunc_model.py" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_an_installed_wheel_finds_its_configs_outside_a_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("SOCIALREC_DATA_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=work, env=env, check=True,
                         capture_output=True, text=True, timeout=300).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert Path(seen["package"]).is_relative_to(site)
    assert Path(seen["configs"]) == site / "socialrec" / "configs"
    assert Path(seen["project"]) == work
    assert seen["dataset"] == "lastfm" and seen["template"]
