"""Bundle resolution from a real MLflow registry (SQLite + local artifacts) and atomic swaps."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pytest
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from socialrec.serving.loader import DirectorySource, ModelSet, RegistrySource


class _Noop(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


def test_registry_download_lands_in_artifacts_bundle(registry, tmp_path):
    source = RegistrySource(registry.name, registry.uri, cache_dir=tmp_path / "cache")
    assert source.resolve("champion") == registry.versions[0]
    assert source.label(registry.versions[0]) == f"{registry.name}/{registry.versions[0]}"
    path = source.download(registry.versions[0])
    model_dir = path.parent.parent
    assert model_dir.parent == tmp_path / "cache" / registry.name
    assert model_dir.name.startswith(f"{registry.versions[0]}-")
    assert path == model_dir / "artifacts" / "bundle"
    assert (path / "meta.json").exists() and (path / "user_index.faiss").exists()
    assert (model_dir / "MLmodel").exists()  # the pyfunc model around it
    bundle = source.load("champion", registry.versions[0])
    assert np.array_equal(bundle.user_emb, registry.bundles[0].user_emb)
    assert source.download(registry.versions[0]) == path  # cached: no second download
    # MLflow keeps the logged directory's own name, not the artifact key: v2 was logged from
    # a directory called "other"
    other = source.download(registry.versions[1])
    assert other.name == "other" and (other / "meta.json").exists()


def test_cache_never_mixes_registries(registry, bundle_dir, tmp_path):
    """Version 1 of another registry with the same model name must not come from the cache."""
    shared_cache = tmp_path / "cache"
    first = RegistrySource(registry.name, registry.uri, cache_dir=shared_cache)
    first.download(registry.versions[0])
    other_uri = f"sqlite:///{tmp_path / 'other.db'}"
    with _use_tracking_uri(other_uri):
        exp = mlflow.create_experiment("other", artifact_location=(tmp_path / "art").as_uri())
        with mlflow.start_run(experiment_id=exp):
            mlflow.pyfunc.log_model(name="model", python_model=_Noop(),
                                    artifacts={"bundle": str(bundle_dir)},
                                    pip_requirements=["numpy"], registered_model_name=registry.name)
    second = RegistrySource(registry.name, other_uri, cache_dir=shared_cache)
    assert registry.versions[0] == "1"  # both registries have a version 1 of this name
    theirs = second.download("1")
    assert theirs != first.download("1") and theirs.name == "b"  # logged from bundle_dir


def test_alias_move_swaps_the_whole_bundle(registry, tmp_path):
    source = RegistrySource(registry.name, registry.uri, cache_dir=tmp_path / "cache")
    models = ModelSet(source, ["champion"])
    old = models.get("champion")
    assert old.version == f"{registry.name}/{registry.versions[0]}"
    assert models.refresh() == []  # nothing moved: nothing reloaded
    assert models.get("champion") is old
    try:
        registry.set_alias("champion", registry.versions[1])
        assert models.refresh() == ["champion"]
        new = models.get("champion")
        assert new.version == f"{registry.name}/{registry.versions[1]}"
        assert np.array_equal(new.bundle.user_emb, registry.bundles[1].user_emb)
        # a request holding the old LoadedModel still has a complete, untouched bundle
        assert np.array_equal(old.bundle.user_emb, registry.bundles[0].user_emb)
    finally:
        registry.set_alias("champion", registry.versions[0])


def test_failed_refresh_keeps_serving(registry, tmp_path):
    source = RegistrySource(registry.name, registry.uri, cache_dir=tmp_path / "cache")
    models = ModelSet(source, ["champion"])
    before = models.models
    with pytest.raises(Exception, match="no-such-alias"):
        models.refresh(["champion", "no-such-alias"])
    assert models.models is before


def test_directory_source_version_follows_its_content(bundle_dir, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    source = DirectorySource(copy)
    v1 = source.resolve("anything")
    assert v1.startswith("dir:") and source.resolve("champion") == v1
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "retrained": True}))
    assert source.resolve("champion") != v1
    with pytest.raises(FileNotFoundError, match=r"meta\.json"):
        DirectorySource(tmp_path / "empty")
