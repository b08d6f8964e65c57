"""Epinions (Tang et al.): product ratings 1-5 with categories, and directed trust between users.

Tang, Gao, Liu, *mTrust*, WSDM 2012; Tang, Gao, Liu, Das Sarma, *eTrust*, KDD 2012. Files: see
SOURCE.md in ``<root>/epinions_tang``. Ratings and trust links carry a coarse period (1..11), stored
as ``ts``.

Options (``dataset:`` section):

- ``release``: ``timestamp`` (default; ``raw_timestamp/``, periods on ratings and trust) or
  ``graphrec`` (``raw_graphrec/``: the same ratings without periods, a larger trust network without
  periods).
- ``split``: ``split_temporal`` (default) sets ``given_split`` from ``split_temporal/`` (train =
  periods 1-8, valid = 9, test = 10-11); ``none`` leaves splitting to ``split.method``.
- ``given_social_max_ts`` (default 8, the last training period): with the given split, the trust
  links training may see are those of periods up to it; they are ``given_split["social"]``.
  ``dataset.social`` keeps every link (a describe shows them all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

import numpy as np
import pandas as pd
from pydantic import model_validator

from socialrec.features.datasets.files import (
    dataset_dir,
    on_error,
    option,
    read_delimited,
    read_raw,
    to_table,
)
from socialrec.features.loader import OnError, SourceOptions, register_loader
from socialrec.features.tables import Dataset, ValidationReport, conform
from socialrec.features.validation import DataError, Lines

NAME = "epinions_tang"
RELEASES = {"timestamp": "raw_timestamp", "graphrec": "raw_graphrec"}
SPLITS = ("split_temporal", "none")
MULTI_CATEGORY = "item rated under several categories (kept its most frequent one)"
SELF_LOOP = "self-trust link (dropped)"


def _items(raw: pd.DataFrame, lines: Lines, report: ValidationReport, errors: str) -> pd.DataFrame:
    """One row per rated item with its most frequent category (ties: the smallest category id).

    ``raw`` holds the ratings file's ``item`` and ``category`` strings, indexed by row position.
    """
    file = "ratings.tsv"
    category = raw["category"].str.strip()
    missing = (category == "").to_numpy()
    if missing.any():
        row = int(raw.index[int(np.argmax(missing))])
        error = DataError(file, lines.of(row), "category", "a category id", got="")
        if errors == "refuse":
            raise error
        report.add(file, "column 'category': expected a category id (rating kept, category "
                   "not used)", int(missing.sum()), str(error))
    pairs = pd.DataFrame({"item_id": raw["item"].str.strip(), "category": category})[~missing]
    counts = pairs.groupby(["item_id", "category"], sort=False).size().rename("n").reset_index()
    counts["order"] = pd.to_numeric(counts["category"], errors="coerce")
    counts = counts.sort_values(["item_id", "n", "order"], ascending=[True, False, True])
    several = counts["item_id"].duplicated(keep=False)
    if several.any():
        report.add(file, MULTI_CATEGORY, int(counts.loc[several, "item_id"].nunique()),
                   f"{file}: e.g. item {counts.loc[several, 'item_id'].iloc[0]}")
    items = counts.drop_duplicates("item_id")[["item_id", "category"]]
    # price is given as NaN: tables.conform cannot fill a missing float column.
    return conform(items.assign(price=np.nan), "items")


class EpinionsOptions(SourceOptions):
    """The ``dataset:`` keys this loader reads (module docstring)."""

    release: Literal["timestamp", "graphrec"] = "timestamp"
    split: Literal["split_temporal", "none"] = "split_temporal"
    given_social_max_ts: int = 8
    on_error: OnError = "refuse"

    @model_validator(mode="after")
    def _split_needs_periods(self) -> Self:
        if self.split != "none" and self.release != "timestamp":
            raise ValueError("split: split_temporal is cut on the periods of the timestamp "
                             "release; with release: graphrec set split: none")
        return self


@register_loader(NAME, options=EpinionsOptions)
def load(cfg: dict, root: Path) -> Dataset:
    base = dataset_dir(root, NAME)
    errors = on_error(cfg)
    release = option(cfg, "release", tuple(RELEASES), "timestamp")
    split = option(cfg, "split", SPLITS, "split_temporal")
    max_ts = int(cfg.get("given_social_max_ts", 8))
    timed = release == "timestamp"
    if split != "none" and not timed:
        raise ValueError("dataset.split: split_temporal is cut on the periods of the timestamp "
                         "release; with release: graphrec set split: none")
    report = ValidationReport()
    raw_dir = base / RELEASES[release]

    rating_cols = {"user_id": "user", "item_id": "item", "value": "rating"}
    trust_cols = {"src": "truster", "dst": "trustee"}
    if timed:
        rating_cols["ts"] = trust_cols["ts"] = "timestamp"
    path = raw_dir / "ratings.tsv"
    raw, lines = read_raw(path, [*rating_cols.values(), "category"], report, errors=errors)
    ratings = to_table(raw, "interactions", report, file=path.name, lines=lines,
                       columns=rating_cols, constants={"event": "rate"}, errors=errors)
    items = _items(raw, lines, report, errors)
    del raw
    social = read_delimited(raw_dir / "trust.tsv", "social", report, columns=trust_cols,
                            errors=errors)
    loops = (social["src"] == social["dst"]).to_numpy(dtype=bool)
    if loops.any():
        report.add("trust.tsv", SELF_LOOP, int(loops.sum()))
        social = social[~loops].reset_index(drop=True)

    notes = [
        f"Epinions ({release} release): event 'rate', value = rating 1-5; items carry their "
        "category; the helpfulness column is not used.",
        "Trust is directed (truster -> trustee); social_symmetric is false.",
    ]
    if timed:
        notes.append("ts is a coarse period 1..11 (not Unix seconds), on ratings and trust links.")
    given = None
    if split == "split_temporal":
        split_cols = {"user_id": "user_id", "item_id": "item_id", "value": "rating", "ts": "ts"}
        given = {
            part: read_delimited(base / "split_temporal" / f"{part}.tsv", "interactions", report,
                           columns=split_cols, constants={"event": "rate"}, errors=errors)
            for part in ("train", "valid", "test")
        }
        given["social"] = social[social["ts"].fillna(max_ts + 1) <= max_ts].reset_index(drop=True)
        notes.append(
            "given split: split_temporal/ (train = periods 1-8, valid = 9, test = 10-11; (user, "
            f"item) de-duplicated keeping the earliest). Training sees the "
            f"{len(given['social']):,} trust links of periods <= {max_ts} "
            f"(dataset.given_social_max_ts) of {len(social):,}.")
    return Dataset(
        name=cfg.get("name") or NAME,
        interactions=ratings,
        social=social,
        items=items,
        social_symmetric=False,
        notes=notes,
        report=report,
        given_split=given,
    )
