"""The framework's floor for bench/serving.py: BentoML endpoints with the service's request and
response models that do no work.

``/push_targets`` answers the first ``k`` of a fixed user list (a k=100 push: a 100-user list),
``/share_partners`` the first ``k`` of a fixed partner list, each in the service's response model
(serving/schemas.py), with the service's BentoML options (one worker, ``SOCIALREC_THREADS``
request threads): what a request costs in BentoML itself (HTTP, validation, the thread hop,
serialisation). Whatever the real endpoints take beyond it is the service's own work.

    bentoml serve bench.floor_service:Floor      # from the repository root
"""

from __future__ import annotations

import os
import uuid

import bentoml

from socialrec.serving.schemas import (
    PushRequest,
    PushResponse,
    SharePartner,
    ShareRequest,
    ShareResponse,
)

USERS = 20_000  # more than any k bench/serving.py asks for
RULES = ("opt_out", "exclude_buyers", "holdout", "frequency_cap")


@bentoml.service(workers=1, threads=int(os.environ.get("SOCIALREC_THREADS", "8")),
                 traffic={"timeout": 300})
class Floor:
    def __init__(self) -> None:
        self.users = [f"u{i}" for i in range(USERS)]
        self.scores = [1.0 - i / USERS for i in range(USERS)]
        self.partners = [SharePartner(user_id=u, score=s, hop=1, parts={"tie": s, "affinity": s},
                                      reason="floor") for u, s in zip(self.users[:1000],
                                                                      self.scores, strict=False)]

    def _served(self) -> dict[str, object]:
        return {"request_id": str(uuid.uuid4()), "experiment": None, "variant": "default",
                "model_version": "floor", "strategy": "floor"}

    @bentoml.api(route="/push_targets")
    def push_targets(self, req: PushRequest, /) -> PushResponse:
        return PushResponse(**self._served(), item_id=req.item_id,
                            campaign_id=req.item_id or "floor", users=self.users[:req.k],
                            scores=self.scores[:req.k], removed=dict.fromkeys(RULES, 0))

    @bentoml.api(route="/share_partners")
    def share_partners(self, req: ShareRequest, /) -> ShareResponse:
        return ShareResponse(**self._served(),
                             partners=self.partners[:req.k], item_fallback=None, reason=None)
