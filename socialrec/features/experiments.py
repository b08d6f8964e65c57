"""A/B experiments: config from YAML, and assignment by a stable hash of (salt, unit id) into 10,000
buckets. Shared by serving (routing) and evaluation (analysis), so it lives in features/.

Bucket layout (why ramps never reshuffle units)
-----------------------------------------------
The first variant of an experiment is its *control*; every other variant (a *treatment*) owns a
fixed range of buckets anchored at its ``offset``: ``[offset, offset + round(weight * 10000))``.
The control owns every bucket no treatment owns. Treatment ranges may not overlap, so:

* raising a treatment's weight extends its range into buckets that were the control's: units
  move from the control into it, and nowhere else;
* lowering a treatment's weight (raising the control's) hands the end of its range back to the
  control: units move into the control only;
* a unit's bucket never changes (it depends on the salt and the unit id only), so two replicas,
  two processes or a restart assign it alike. Changing the salt reshuffles everyone on purpose.

Without an explicit ``offset``, the ``j``-th of ``m`` treatments (0-based) is anchored at
``j * 10000 // m``: one treatment can ramp to 100 %, two to 50 % each, and so on.

Holdout
-------
``holdout.weight`` is a share of *users* that receives no push from the experiment's endpoints.
It is drawn per campaign (salt ``"{salt}:holdout:{campaign}"``) so every campaign gets its own
random control group for measuring incremental lift; :func:`in_holdout` recomputes it for the
analysis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

N_BUCKETS = 10_000
#: Endpoints an experiment can route. The streaming push follows the ``push_targets`` experiment.
ROUTED_ENDPOINTS = ("push_targets", "share_partners", "recommend")
PUSH_ENDPOINTS = ("push_targets",)


def bucket(salt: str, unit_id: str) -> int:
    """The bucket (0..9999) of ``unit_id`` under ``salt``: the same in every process and release.

    blake2b rather than ``hash()``, which Python randomises per process (PYTHONHASHSEED).
    """
    digest = hashlib.blake2b(f"{salt}\x1f{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % N_BUCKETS


def buckets(salt: str, unit_ids: Sequence[str]) -> np.ndarray:
    """:func:`bucket` of many ids, as an int array."""
    return np.fromiter((bucket(salt, u) for u in unit_ids), dtype=np.int64, count=len(unit_ids))


def holdout_salt(salt: str, campaign: str) -> str:
    return f"{salt}:holdout:{campaign}"


def in_holdout(salt: str, share: float, campaign: str, user_ids: Sequence[str]) -> np.ndarray:
    """Which of ``user_ids`` are held out of ``campaign`` (a boolean array)."""
    return buckets(holdout_salt(salt, campaign), user_ids) < round(share * N_BUCKETS)


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float = Field(ge=0.0, le=1.0, description="share of units routed to this variant")
    alias: str = Field(min_length=1, description="registry alias of the model this variant serves")
    offset: int | None = Field(None, ge=0, lt=N_BUCKETS,
                               description="first bucket of a treatment (ignored for the control)")


class Holdout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float = Field(0.0, ge=0.0, lt=1.0, description="share of users that gets no push")


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    salt: str = Field(min_length=1)
    unit: Literal["user", "campaign"]
    endpoints: list[Literal["push_targets", "share_partners", "recommend"]] = Field(min_length=1)
    variants: dict[str, Variant] = Field(min_length=1)
    holdout: Holdout = Holdout()

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        total = sum(v.weight for v in self.variants.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"variant weights must sum to 1, got {total:g}")
        if "holdout" in self.variants:
            raise ValueError("'holdout' is reserved for the holdout group, not a variant name")
        pushes = [e for e in self.endpoints if e in PUSH_ENDPOINTS]
        if pushes and self.unit != "campaign":
            raise ValueError(f"endpoints {pushes} rank users for one campaign: unit must be "
                             f"'campaign', got {self.unit!r}")
        self.ranges()  # refuses overlapping treatments
        return self

    @property
    def control(self) -> str:
        return next(iter(self.variants))

    def ranges(self) -> dict[str, tuple[int, int]]:
        """``{treatment: (first bucket, end bucket)}``; the control owns the rest."""
        treatments = list(self.variants)[1:]
        out: dict[str, tuple[int, int]] = {}
        for j, name in enumerate(treatments):
            v = self.variants[name]
            start = v.offset if v.offset is not None else j * N_BUCKETS // len(treatments)
            end = start + round(v.weight * N_BUCKETS)
            if end > N_BUCKETS:
                raise ValueError(f"variant {name!r}: buckets [{start}, {end}) run past "
                                 f"{N_BUCKETS}; lower its weight or its offset")
            for other, (s, e) in out.items():
                if start < e and s < end:
                    raise ValueError(f"variant {name!r}: buckets [{start}, {end}) overlap "
                                     f"{other!r} [{s}, {e}); give it another offset")
            out[name] = (start, end)
        return out

    def variant_of_bucket(self, b: int) -> str:
        for name, (start, end) in self.ranges().items():
            if start <= b < end:
                return name
        return self.control

    def assign(self, unit_id: str) -> str:
        """The variant of ``unit_id``."""
        return self.variant_of_bucket(bucket(self.salt, unit_id))

    def aliases(self) -> set[str]:
        """Registry aliases this experiment can route to (variants with weight > 0)."""
        return {v.alias for v in self.variants.values() if v.weight > 0}


class Experiments(BaseModel):
    """The content of ``configs/experiments.yaml``."""

    model_config = ConfigDict(extra="forbid")

    experiments: dict[str, Experiment] = {}

    @model_validator(mode="after")
    def _one_per_endpoint(self) -> Experiments:
        owner: dict[str, str] = {}
        for name, exp in self.experiments.items():
            for endpoint in exp.endpoints:
                if endpoint in owner:
                    raise ValueError(f"endpoint {endpoint!r} is routed by both {owner[endpoint]!r} "
                                     f"and {name!r}; one experiment per endpoint")
                owner[endpoint] = name
        return self

    def for_endpoint(self, endpoint: str) -> tuple[str, Experiment] | None:
        for name, exp in self.experiments.items():
            if endpoint in exp.endpoints:
                return name, exp
        return None

    def aliases(self) -> set[str]:
        return set().union(*(e.aliases() for e in self.experiments.values()))


def load_experiments(path: str | Path) -> Experiments:
    """Read and validate an experiments file; errors name the file and the offending key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return Experiments.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from exc
