"""The Bento's service: :class:`SocialRec` serving the bundle packed into the Bento at build time.

Model source: packed at build. ``socialrec bento build`` (serving/bento_build.py) resolves the
registry alias (``champion``), copies that version's bundle into BentoML's model store as the
model ``socialrec-bundle`` and builds ``bentofile.yaml``, whose service is this one. The service
declares the model (``BentoModel``), so ``bentoml build`` packs it into the Bento and ``bentoml
containerize`` into the image: the image needs no registry at start-up, serves the same bytes
every time, and every response and exposure names the registry version it was packed from
(``model_version``: ``socialrec-synthetic/3``). A new champion ships as a new Bento (build, then
roll out); the running service's ``/admin/reload`` re-reads the experiments file only.

The Bento argument ``model`` (``bentoml build --arg model=socialrec-bundle:<version>``; default
``socialrec-bundle:latest``) names the model to pack; ``socialrec bento build`` pins the exact tag.
Importing this module without that model in the store (``bentoml build`` before any packing) stops
with a message saying how to pack one: a Bento without a model is refused at build time.

Everything else (endpoints, A/B routing, event store, readiness) is :class:`SocialRec`'s,
configured by the same environment variables; experiments are off unless ``SOCIALREC_EXPERIMENTS``
names a file.
"""

from __future__ import annotations

from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException, NotFound
from pydantic import BaseModel

from socialrec.serving.bento_build import MODEL_NAME
from socialrec.serving.http import add_http_edges
from socialrec.serving.loader import BundleSource, PackedSource
from socialrec.serving.service import SERVICE_OPTIONS, SocialRec


class BentoArgs(BaseModel):
    model: str = f"{MODEL_NAME}:latest"  # the BentoML model tag to pack and serve


class NoPackedModel(BentoMLException):
    """The Bento's model is not in BentoML's model store."""


ARGS = bentoml.use_arguments(BentoArgs)


def packed_model(tag: str) -> Any:
    """The stored model ``tag``, or a clear refusal (a Bento built without a model)."""
    try:
        return bentoml.models.get(tag)
    except NotFound:
        raise NoPackedModel(
            f"no BentoML model {tag!r} in the model store: the Bento serves the bundle packed "
            "into it, so there is nothing to build. Pack the registry's champion and build with "
            "`socialrec bento build` (or `socialrec bento pack`, then `bentoml build`)."
        ) from None


packed_model(ARGS.model)  # refuse at import, so `bentoml build` stops before building


@bentoml.service(name="SocialRec", **SERVICE_OPTIONS)
class SocialRecBento(SocialRec.inner):  # type: ignore[name-defined]  # mypy cannot follow Service.inner
    packed = bentoml.models.BentoModel(ARGS.model)

    def bundle_source(self) -> BundleSource:
        model = self.packed  # resolved by BentoML: the Bento's own copy
        meta = model.info.metadata
        return PackedSource(model.path_of("bundle"), f"{meta['registered_model']}/"
                            f"{meta['version']}", str(model.tag))


add_http_edges(SocialRecBento)
