"""Building the Bento: pack the registry alias's bundle into BentoML's model store, then build
``bentofile.yaml`` around it (``socialrec bento build``; the service is serving/bento_service.py).

``BENTOML_HOME`` says where BentoML keeps its model and Bento stores (default ``~/bentoml``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from socialrec.serving.loader import RegistrySource

#: The BentoML model a Bento serves (serving/bento_service.py reads the same name).
MODEL_NAME = "socialrec-bundle"


class PackError(RuntimeError):
    """The registry has nothing to pack (no such model or alias, or it does not answer)."""


@dataclass(frozen=True)
class Built:
    bento: str  # the Bento's tag
    model: str  # the packed model's tag
    version: str  # the registry version packed: "socialrec-synthetic/3"


def pack(source: RegistrySource, alias: str) -> Any:
    """Copy the bundle ``alias`` points to into BentoML's model store; return the stored model.

    Its labels name the registered model, version and alias; its metadata where it came from.
    """
    import bentoml

    try:
        version = source.resolve(alias)
        bundle = source.download(version)
    except Exception as exc:  # MlflowException (no such model / alias), connection errors
        raise PackError(f"cannot pack {source.name}@{alias} from the registry "
                        f"{source.tracking_uri or '(MLflow default)'}: {exc}. Train and "
                        "register a model first (socialrec train), or name another alias "
                        "(--alias).") from exc
    mv = source.client.get_model_version(source.name, version)
    labels = {"registered_model": source.name, "version": version, "alias": alias}
    metadata = {**labels, "run_id": mv.run_id, "source": mv.source,
                "packed_at": datetime.now(UTC).isoformat()}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as model:
        shutil.copytree(bundle, model.path_of("bundle"))
    return model


def build(model_tag: str, build_ctx: Path, bentofile: str = "bentofile.yaml") -> Any:
    """Build ``bentofile`` in ``build_ctx`` serving the stored model ``model_tag``."""
    import bentoml

    return bentoml.bentos.build_bentofile(str(build_ctx / bentofile), build_ctx=str(build_ctx),
                                          args={"model": model_tag})


def pack_and_build(source: RegistrySource, alias: str, build_ctx: Path) -> Built:
    model = pack(source, alias)
    bento = build(str(model.tag), build_ctx)
    meta = model.info.metadata
    return Built(str(bento.tag), str(model.tag), f"{meta['registered_model']}/{meta['version']}")
