"""The canonical tables every source format is converted into (DESIGN.md, "canonical data model").

A :class:`Dataset` is a handful of pandas DataFrames with fixed columns and dtypes. Loaders build
one,
:func:`validate` checks it, splits cut it, and graph building encodes it with :class:`IdMap` s.
External ids are always strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

#: Event kinds an interaction can have, with the default edge weight each gets in the graph
#: (a purchase says more about taste than a view). configs/defaults.yaml can override them.
EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "cart",
    "purchase",
    "rate",
    "share",
    "join",
    "push_open",
)

#: Columns and pandas dtypes of each table. ``ts`` is Unix seconds (nullable: some sources have
#: none);
#: a source whose timestamps are coarse periods stores the period number.
#: The pandas dtypes a canonical column may have.
Dtype = Literal["string", "Int64", "float64", "bool"]

INTERACTIONS: dict[str, Dtype] = {
    "user_id": "string",
    "item_id": "string",
    "event": "string",
    "ts": "Int64",
    "value": "float64",
}
SOCIAL: dict[str, Dtype] = {"src": "string", "dst": "string", "weight": "float64", "ts": "Int64"}
SHARES: dict[str, Dtype] = {
    "sharer_id": "string",
    "item_id": "string",
    "recipient_id": "string",
    "ts": "Int64",
    "joined": "bool",
}
ITEMS: dict[str, Dtype] = {"item_id": "string", "category": "string", "price": "float64"}
USERS: dict[str, Dtype] = {"user_id": "string", "push_opt_in": "bool"}

SCHEMAS: dict[str, dict[str, Dtype]] = {
    "interactions": INTERACTIONS,
    "social": SOCIAL,
    "shares": SHARES,
    "items": ITEMS,
    "users": USERS,
}


def empty(table: str) -> pd.DataFrame:
    """An empty frame with the columns and dtypes of ``table``."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SCHEMAS[table].items()})


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return ``df`` with exactly the canonical columns of ``table``, in order, with their dtypes.

    Optional columns that are missing are filled with nulls (``weight`` with 1.0, ``joined`` with
    False, ``push_opt_in`` with True); extra columns of ``items`` / ``users`` are kept after them as
    side information.
    """
    schema = SCHEMAS[table]
    defaults = {"weight": 1.0, "value": 1.0, "joined": False, "push_opt_in": True}
    out = {}
    for col, dtype in schema.items():
        if col in df.columns:
            out[col] = (
                df[col].astype(dtype) if dtype != "string" else df[col].astype(str).astype(dtype)
            )
        else:
            # float columns take NaN (pandas refuses pd.NA in a float64 Series)
            fill = defaults.get(col, float("nan") if dtype == "float64" else pd.NA)
            out[col] = pd.Series([fill] * len(df), index=df.index, dtype=dtype)
    result = pd.DataFrame(out)
    if table in ("items", "users"):
        for col in df.columns:
            if col not in schema:
                result[col] = df[col]
    return result.reset_index(drop=True)


@dataclass
class Dataset:
    """One dataset in canonical form.

    ``social_symmetric`` says whether friendship is mutual in the source (the loader knows);
    ``notes`` carries facts a describe command must show (e.g. "social ties derived from past group
    records"); ``report`` counts what validation refused.
    """

    name: str
    interactions: pd.DataFrame = field(default_factory=lambda: empty("interactions"))
    social: pd.DataFrame = field(default_factory=lambda: empty("social"))
    shares: pd.DataFrame = field(default_factory=lambda: empty("shares"))
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    social_symmetric: bool = True
    notes: list[str] = field(default_factory=list)
    report: ValidationReport | None = None
    #: Pre-made splits shipped with the source: {"train"|"valid"|"test": interactions frame}.
    given_split: dict[str, pd.DataFrame] | None = None
    #: Split methods that cannot leak for this source (None: any). A source whose social ties are
    #: derived from records allows only the split those ties were derived for.
    allowed_splits: tuple[str, ...] | None = None


@dataclass
class ValidationReport:
    """What a loader refused or dropped, counted by reason, per file (nothing dropped silently)."""

    refused: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> reason -> rows
    examples: dict[str, list[str]] = field(default_factory=dict)  # file -> a few messages

    def add(self, file: str, reason: str, count: int = 1, example: str | None = None) -> None:
        by_reason = self.refused.setdefault(file, {})
        by_reason[reason] = by_reason.get(reason, 0) + count
        if example and len(self.examples.setdefault(file, [])) < 5:
            self.examples[file].append(example)

    @property
    def total_refused(self) -> int:
        return sum(sum(r.values()) for r in self.refused.values())
