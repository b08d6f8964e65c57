"""Bundle resolution from a real MLflow registry (SQLite + local artifacts) and atomic swaps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from socialrec.serving.loader import DirectorySource, ModelSet, RegistrySource


def test_registry_download_lands_in_artifacts_bundle(registry, tmp_path):
    source = RegistrySource(registry.name, registry.uri, cache_dir=tmp_path / "cache")
    assert source.resolve("champion") == f"{registry.name}/{registry.versions[0]}"
    path = source.download(registry.versions[0])
    model_dir = tmp_path / "cache" / registry.name / registry.versions[0]
    assert path == model_dir / "artifacts" / "bundle"
    assert (path / "meta.json").exists() and (path / "user_index.faiss").exists()
    assert (model_dir / "MLmodel").exists()  # the pyfunc model around it
    bundle = source.load("champion", f"{registry.name}/{registry.versions[0]}")
    assert np.array_equal(bundle.user_emb, registry.bundles[0].user_emb)
    assert source.download(registry.versions[0]) == path  # cached: no second download
    # MLflow keeps the logged directory's own name, not the artifact key: v2 was logged from
    # a directory called "other"
    other = source.download(registry.versions[1])
    assert other.name == "other" and (other / "meta.json").exists()


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
