"""The Bento: `socialrec bento build` packs the registry's champion and builds bentofile.yaml;
the BUILT Bento (`bentoml serve socialrec:<version>`, from the Bento store, not the source tree)
answers every endpoint from the packed bundle; a Bento without a model is refused at build time.
BENTOML_HOME is a temporary directory: nothing lands in the user's BentoML store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from socialrec.features.paths import project_dir
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

BENTOML = str(Path(sys.executable).with_name("bentoml"))


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env={**os.environ, "BENTOML_DO_NOT_TRACK": "true",
                                     "MLFLOW_DISABLE_TELEMETRY": "true", **env},
                          cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bentoml_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bentoml")


@pytest.fixture(scope="module")
def built(registry, bentoml_home) -> dict[str, str]:
    """`socialrec bento build` of the registry fixture's champion (version 1)."""
    registry.set_alias("champion", registry.versions[0])
    proc = _run([sys.executable, "-m", "socialrec.cli", "bento", "build",
                 "--set", f"serving.model={registry.name}"],
                {"BENTOML_HOME": str(bentoml_home), "MLFLOW_TRACKING_URI": registry.uri})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bento = proc.stdout.split("built Bento ")[1].split()[0]
    return {"bento": bento, "version": f"{registry.name}/{registry.versions[0]}"}


def test_built_bento_serves_every_endpoint(built, bentoml_home, tmp_path, admin_token):
    env = {"BENTOML_HOME": str(bentoml_home), "SOCIALREC_POLL_SECONDS": "0",
           "SOCIALREC_EVENT_STORE": f"sqlite:///{tmp_path / 'events.db'}",
           "SOCIALREC_ADMIN_TOKEN": admin_token, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    server = ServerProcess(env, tmp_path / "bento.log", timeout=180, command=[
        BENTOML, "serve", built["bento"], "--host", "127.0.0.1", "--port", "{port}"])
    try:
        # the worker runs the Bento's copy of the code, from the Bento store
        bento_dir = bentoml_home / "bentos" / Path(*built["bento"].split(":"))
        cwds = {Path(p.cwd()) for p in server.processes()
                if "_bentoml_impl.worker" in " ".join(p.cmdline())}
        assert cwds == {bento_dir / "src"}, cwds
        _call_every_endpoint(server.url, built["version"], admin_token)
    finally:
        server.stop()


def _call_every_endpoint(url: str, version: str, admin_token: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        schema = client.get("/docs.json").json()
        posts = {path for path, ops in schema["paths"].items() if "post" in ops}
        called = {}
        called["/push_targets"] = client.post("/push_targets", json={"item_id": "i3", "k": 5})
        called["/push_targets_stream"] = client.post("/push_targets_stream",
                                                     json={"item_id": "i3", "k": 5})
        called["/share_partners"] = client.post("/share_partners",
                                                json={"user_id": "u1", "item_id": "i3", "k": 3})
        called["/recommend"] = client.post("/recommend", json={"user_id": "u1", "k": 3})
        called["/feedback"] = client.post("/feedback", json={"events": [
            {"event_id": "bento-1", "user_id": "u1", "item_id": "i3", "event": "click"}]})
        called["/admin/reload"] = client.post(
            "/admin/reload", headers={"Authorization": f"Bearer {admin_token}"})
        assert set(called) == posts, "a new endpoint: call it here too"
        for path, r in called.items():
            assert r.status_code == 200, (path, r.text)
        for path in ("/push_targets", "/share_partners", "/recommend"):
            assert called[path].json()["model_version"] == version
        assert len(called["/push_targets"].json()["users"]) == 5
        head = json.loads(called["/push_targets_stream"].text.splitlines()[0])
        assert head["model_version"] == version and head["n_users"] == 5
        assert called["/feedback"].json() == {"accepted": 1, "duplicates": 0}
        assert called["/admin/reload"].json() == {"models": {"champion": version}, "changed": []}
        for path in ("/livez", "/readyz", "/healthz", "/metrics", "/status"):
            assert client.get(path).status_code == 200, path
        status = client.get("/status").json()
        assert status["models"] == {"champion": version}
        assert status["model_source"]["where"].startswith("bento model socialrec-bundle:")


def test_image_context_carries_the_packed_model(built, bentoml_home, monkeypatch):
    """What `bentoml containerize` would send to Docker (no daemon here): the Dockerfile and the
    packed bundle, so the image needs no registry."""
    monkeypatch.setenv("BENTOML_HOME", str(bentoml_home))
    code = """
import sys, bentoml
from pathlib import Path
from bentoml._internal.container import construct_containerfile
bento = bentoml.get(sys.argv[1])
with construct_containerfile(bento) as (context, dockerfile):
    print(Path(dockerfile).relative_to(context))
    print(*sorted(str(p.relative_to(context)) for p in Path(context).rglob("meta.json")))
"""
    proc = _run([sys.executable, "-c", code, built["bento"]], {})
    assert proc.returncode == 0, proc.stderr[-3000:]
    dockerfile, metas = proc.stdout.strip().splitlines()[-2:]
    assert dockerfile == "env/docker/Dockerfile"
    assert metas.startswith("models/socialrec-bundle/") and metas.endswith("/bundle/meta.json")


def test_a_bento_without_a_model_is_refused(registry, tmp_path):
    empty = {"BENTOML_HOME": str(tmp_path / "empty"), "MLFLOW_TRACKING_URI": registry.uri}
    # nothing in the registry under that alias
    proc = _run([sys.executable, "-m", "socialrec.cli", "bento", "build", "--alias", "nosuch",
                 "--set", f"serving.model={registry.name}"], empty)
    assert proc.returncode == 2
    assert f"cannot pack {registry.name}@nosuch" in " ".join(proc.stdout.split())
    # bentoml build with nothing packed
    proc = _run([BENTOML, "build", str(project_dir())], empty)
    assert proc.returncode != 0
    message = " ".join((proc.stdout + proc.stderr).split())
    assert "no BentoML model 'socialrec-bundle:latest' in the model store" in message
    assert "socialrec bento build" in message
    assert not (tmp_path / "empty" / "bentos").exists() or not any(
        (tmp_path / "empty" / "bentos").rglob("bento.yaml"))


def test_bentofile_requirements_match_pyproject():
    """The Bento installs what pyproject.toml allows: same packages, same bounds."""
    import tomllib

    bentofile = yaml.safe_load((project_dir() / "bentofile.yaml").read_text())
    project = tomllib.loads((project_dir() / "pyproject.toml").read_text())["project"]
    allowed = set(project["dependencies"])
    assert set(bentofile["python"]["packages"]) <= allowed
    assert bentofile["service"] == "socialrec.serving.bento_service:SocialRecBento"
    assert bentofile["python"]["lock_packages"] is False  # locking needs a package index
