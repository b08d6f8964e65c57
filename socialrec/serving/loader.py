"""Which bundle answers: resolving registry aliases, loading bundles, swapping them atomically.

A bundle comes either from a directory (env ``SOCIALREC_BUNDLE_DIR``: every alias is that
bundle; for demos and tests) or from the MLflow model registry: ``SOCIALREC_MODEL`` @ alias is
resolved to a version with ``MlflowClient.get_model_version_by_alias``, and that version's
model (``models:/{name}/{version}``: the version the alias pointed to when we asked, so an alias
moving during the download cannot mix two versions) is downloaded from the artifact location the
same client reports. The training side logs the bundle as a pyfunc model with
``artifacts={"bundle": <dir>}``, so it lands in ``<model dir>/artifacts/<dir's name>/`` (the
MLmodel file says which; ``artifacts/bundle/`` when the directory is called ``bundle``).

:class:`ModelSet` holds ``{alias: LoadedModel}`` in one attribute. :meth:`ModelSet.refresh`
loads every changed version completely (arrays, FAISS indexes) before replacing that attribute
in one assignment, so a request that already read it finishes on the old bundles and the next one
sees only new ones; nothing is ever half-swapped. The service calls it from a background thread
every ``SOCIALREC_POLL_SECONDS`` and on ``POST /admin/reload``.

A registry that does not answer never empties the served set: a failed refresh swaps nothing. At
start-up, when the registry cannot be reached, :meth:`ModelSet.load_last_known` serves each
alias's last version resolved by this cache directory (``RegistrySource`` notes it at every
resolve), if its download is still cached; the service says so in ``/status`` and its log.

A Bento (serving/bento_service.py) serves the bundle packed into it at build time through
:class:`PackedSource`: every alias is that bundle, named by the registry version it was packed
from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from socialrec.models.bundle import ModelBundle
from socialrec.models.index import build_indexes
from socialrec.serving.share import prepare_share

log = logging.getLogger("socialrec.serving")


@dataclass(frozen=True)
class LoadedModel:
    alias: str
    version: str  # what responses and exposures call it: "name/3", or "dir:<hash>"
    bundle: ModelBundle


class BundleSource(Protocol):
    def resolve(self, alias: str) -> str:
        """The version ``alias`` points to now."""

    def label(self, version: str) -> str:
        """How responses and exposures name that version."""

    def load(self, alias: str, version: str) -> ModelBundle:
        """That version's bundle, fully loaded."""

    def last_known(self, alias: str) -> str | None:
        """The version ``alias`` pointed to when the source last answered, if it can still be
        loaded without the source (a cached download); None otherwise."""

    def describe(self) -> str:
        """Where bundles come from, for /status and logs."""


def prepare(bundle: ModelBundle, where: str) -> ModelBundle:
    """Make a loaded bundle servable: parse its share ranker and build the share-partner
    features' context once (serving/share.py; a ValueError names an unusable
    share_ranker.json), index it if it came without indexes (a bundle saved before index
    building)."""
    prepare_share(bundle, where)
    if bundle.user_index is None or bundle.item_index is None:
        log.warning("%s has no FAISS indexes; building them now", where)
        build_indexes(bundle)
    return bundle


class DirectorySource:
    """One bundle directory for every alias; its version is a hash of its meta.json, so
    rewriting the directory and reloading swaps it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "meta.json").exists():
            raise FileNotFoundError(f"SOCIALREC_BUNDLE_DIR={self.path}: no meta.json there; "
                                    "expected a directory written by ModelBundle.save")

    def resolve(self, alias: str) -> str:
        digest = hashlib.sha256((self.path / "meta.json").read_bytes()).hexdigest()[:12]
        return f"dir:{digest}"

    def label(self, version: str) -> str:
        return version

    def load(self, alias: str, version: str) -> ModelBundle:
        return prepare(ModelBundle.load(self.path), str(self.path))

    def last_known(self, alias: str) -> str | None:
        return None  # a directory is read where it is: nothing to fall back to

    def describe(self) -> str:
        return f"directory {self.path}"


class PackedSource(DirectorySource):
    """The bundle packed into a Bento (a directory of BentoML's model store) for every alias;
    its version is the label it was packed under (``socialrec-synthetic/3``), so responses and
    exposures name the registry version whichever way it is served."""

    def __init__(self, path: str | Path, version: str, tag: str) -> None:
        super().__init__(path)
        self.version, self.tag = version, tag

    def resolve(self, alias: str) -> str:
        return self.version

    def describe(self) -> str:
        return f"bento model {self.tag} ({self.version})"


class RegistrySource:
    """Versions of one registered model, by alias; downloads cached under ``cache_dir``."""

    def __init__(self, name: str, tracking_uri: str | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self.name = name
        self.tracking_uri = tracking_uri
        self._client: Any = None
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "socialrec-bundles")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._offline: dict[str, Path] = {}  # version -> cached download, from last_known

    @property
    def client(self) -> Any:
        """The MLflow client, made on first use: for a database URI MLflow connects at once, and
        a registry that does not answer must not stop the service from starting."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def resolve(self, alias: str) -> str:
        mv = self.client.get_model_version_by_alias(self.name, alias)
        version = str(mv.version)
        self._note(alias, version, self._cache_entry(mv))
        return version

    def label(self, version: str) -> str:
        return f"{self.name}/{version}"

    def describe(self) -> str:
        # MLflow's rule: MLFLOW_REGISTRY_URI, when set, wins over the tracking URI
        where = os.environ.get("MLFLOW_REGISTRY_URI") or self.tracking_uri or "(MLflow default)"
        return f"registry {where} model {self.name}"

    def _cache_entry(self, mv: Any) -> Path:
        """Where ``mv``'s download is cached. The key includes where its artifacts come from
        and when it was created: version numbers alone repeat across registries (every fresh
        registry has a version 1)."""
        origin = f"{mv.source}|{mv.run_id}|{mv.creation_timestamp}"
        key = hashlib.sha256(origin.encode()).hexdigest()[:12]
        return self.cache_dir / self.name / f"{mv.version}-{key}"  # the pyfunc model directory

    def _pointer(self, alias: str) -> Path:
        """The file noting what ``alias`` resolved to in this registry (one per tracking URI:
        a cache directory may be shared by services of different registries)."""
        registry = hashlib.sha256(str(self.tracking_uri).encode()).hexdigest()[:8]
        return self.cache_dir / self.name / "aliases" / registry / f"{alias}.json"

    def _note(self, alias: str, version: str, entry: Path) -> None:
        pointer = self._pointer(alias)
        note = json.dumps({"version": version, "entry": entry.name})
        with contextlib.suppress(OSError):  # a read-only cache only loses the fallback
            if not pointer.exists() or pointer.read_text() != note:
                pointer.parent.mkdir(parents=True, exist_ok=True)
                tmp = pointer.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(note)
                tmp.replace(pointer)

    def last_known(self, alias: str) -> str | None:
        try:
            note = json.loads(self._pointer(alias).read_text())
        except (OSError, ValueError):
            return None
        entry = self.cache_dir / self.name / note["entry"]
        if not (entry / "MLmodel").exists():
            return None
        self._offline[str(note["version"])] = entry
        return str(note["version"])

    def download(self, version: str) -> Path:
        """The bundle directory of ``version``, downloaded once (into a temporary directory,
        renamed into place when complete, so a crash never leaves half a bundle cached).

        A version :meth:`last_known` found in the cache is read from there without asking the
        registry (which did not answer).
        """
        import mlflow

        if version in self._offline:
            return bundle_path(self._offline[version])
        final = self._cache_entry(self.client.get_model_version(self.name, version))
        if (final / "MLmodel").exists():
            return bundle_path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{version}-"))
        try:
            # The version's own artifact location, resolved by our client: downloading
            # "models:/..." directly would resolve it with the process-wide tracking URI.
            uri = self.client.get_model_version_download_uri(self.name, version)
            model_dir = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(tmp), tracking_uri=self.tracking_uri))
            bundle_path(model_dir)  # refuse a model without a bundle before caching it
            with contextlib.suppress(OSError):  # another worker finished first: use theirs
                model_dir.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return bundle_path(final)

    def load(self, alias: str, version: str) -> ModelBundle:
        return prepare(ModelBundle.load(self.download(version)), f"models:/{self.label(version)}")


def bundle_path(model_dir: Path) -> Path:
    """The bundle inside a downloaded pyfunc model: ``artifacts/<name of the logged dir>``.

    MLflow keeps the logged directory's own name (``artifacts={"bundle": ".../out"}`` lands in
    ``artifacts/out``), so the path is read from the MLmodel file rather than assumed.
    """
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
    artifacts = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts") or {}
    entry = artifacts.get("bundle")
    if not entry or not (model_dir / entry["path"] / "meta.json").exists():
        raise FileNotFoundError(
            f"{model_dir / 'MLmodel'}: no 'bundle' artifact with a meta.json; expected a pyfunc "
            "model logged with artifacts={'bundle': <ModelBundle directory>}")
    return model_dir / entry["path"]


def source_from_env(env: dict[str, str] | None = None) -> BundleSource:
    env = dict(os.environ if env is None else env)
    if env.get("SOCIALREC_BUNDLE_DIR"):
        return DirectorySource(env["SOCIALREC_BUNDLE_DIR"])
    return RegistrySource(env.get("SOCIALREC_MODEL", "socialrec-synthetic"),
                          env.get("MLFLOW_TRACKING_URI"), env.get("SOCIALREC_CACHE_DIR"))


class ModelSet:
    """The bundles being served, one per alias, swapped atomically (see module docstring)."""

    def __init__(self, source: BundleSource, aliases: Iterable[str] | None = None) -> None:
        """Load ``aliases`` now (raising if one cannot be loaded); None: load nothing yet."""
        self.source = source
        self.models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()  # one refresh at a time; readers never take it
        if aliases is not None:
            self.refresh(aliases)

    def get(self, alias: str) -> LoadedModel:
        return self.models[alias]

    def refresh(self, aliases: Iterable[str] | None = None) -> list[str]:
        """Load what changed (for ``aliases``, default: those served now), then swap; return
        the aliases whose version changed. A failure leaves the served set untouched."""
        with self._lock:
            current = self.models
            wanted = sorted(set(aliases) if aliases is not None else set(current))
            new: dict[str, LoadedModel] = {}
            loaded: dict[str, ModelBundle] = {}  # aliases on the same version share a bundle
            for alias in wanted:
                version = self.source.resolve(alias)
                label = self.source.label(version)
                old = current.get(alias)
                if old is not None and old.version == label:
                    new[alias] = old
                    continue
                same = next((m.bundle for m in current.values() if m.version == label), None)
                bundle = same or loaded.get(label) or self.source.load(alias, version)
                loaded[label] = bundle
                new[alias] = LoadedModel(alias, label, bundle)
            changed = [a for a in wanted
                       if a not in current or current[a].version != new[a].version]
            self.models = new  # the swap: one reference assignment
        for alias in changed:
            log.info("serving %s = %s", alias, new[alias].version)
        return changed

    def load_last_known(self, aliases: Iterable[str]) -> list[str]:
        """The source did not answer: serve each of ``aliases`` not served yet at its last known
        version (:meth:`BundleSource.last_known`), and return those it found. Only ever adds."""
        with self._lock:
            new = dict(self.models)
            for alias in sorted(set(aliases) - set(new)):
                version = self.source.last_known(alias)
                if version is None:
                    continue
                label = self.source.label(version)
                same = next((m.bundle for m in new.values() if m.version == label), None)
                new[alias] = LoadedModel(alias, label, same or self.source.load(alias, version))
            found = sorted(set(new) - set(self.models))
            self.models = new
        for alias in found:
            log.warning("serving %s = %s, its last known version (the source did not answer)",
                        alias, new[alias].version)
        return found
