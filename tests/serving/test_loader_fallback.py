"""Without its registry, a model set can start from each alias's last known, cached version."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from socialrec.serving.loader import ModelSet, PackedSource, RegistrySource


def test_last_known_version_is_served_without_the_registry(registry, tmp_path):
    registry.set_alias("champion", registry.versions[1])
    db = tmp_path / "registry.db"
    shutil.copy(registry.uri.removeprefix("sqlite:///"), db)
    cache = tmp_path / "cache"
    online = ModelSet(RegistrySource(registry.name, f"sqlite:///{db}", cache), ["champion"])
    registry.set_alias("champion", registry.versions[0])
    served = online.get("champion")

    db.write_bytes(b"not a database" * 64)
    offline = RegistrySource(registry.name, f"sqlite:///{db}", cache)  # no connection yet
    models = ModelSet(offline)
    with pytest.raises(Exception, match="not a database"):
        models.refresh(["champion"])
    assert models.models == {}
    assert models.load_last_known(["champion", "nobody-set-this"]) == ["champion"]
    assert models.get("champion").version == served.version == f"{registry.name}/2"
    np.testing.assert_array_equal(models.get("champion").bundle.user_emb, served.bundle.user_emb)

    # the note is per registry: another registry with the same cache knows nothing
    other = RegistrySource(registry.name, f"sqlite:///{tmp_path / 'other.db'}", cache)
    assert other.last_known("champion") is None


def test_packed_source_names_the_registry_version(bundle_dir):
    source = PackedSource(bundle_dir, "socialrec-x/7", "socialrec-bundle:abc")
    models = ModelSet(source, ["champion", "challenger"])
    assert {m.version for m in models.models.values()} == {"socialrec-x/7"}
    assert models.get("champion").bundle is models.get("challenger").bundle
    assert source.last_known("champion") is None
    assert source.describe() == "bento model socialrec-bundle:abc (socialrec-x/7)"
