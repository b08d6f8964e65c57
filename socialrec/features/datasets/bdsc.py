"""Alibaba item-sharing records (CAAI-BDSC2023 / Tianchi "social graph link prediction"), a sample.

Each record is (inviter, item, voter, time): the inviter shared a link to the item and the voter
received and clicked it, which is exactly share-partner supervision. Only a 30,134-record
subsample is available (a schema / smoke-test sample, not a benchmark). Files: see SOURCE.md in
``<root>/bdsc2023_item_share_sample``.

Tables: shares (sharer = inviter, recipient = voter, ``joined=True``: the voter clicked);
interactions (the inviter ``share`` s the item, one row per (inviter, item, second) with value =
the number of voters reached; the voter ``click`` s it); social = one row per share record,
inviter -> voter, weight 1, ts = the share's time, so that a temporal split keeping the rows at or
before its cut rebuilds the ties from training records only (the source has no friendship graph);
items from item_info.csv (category = cate_id; cate_level1_id, brand_id, shop_id as side columns).
Times are ``YYYY-MM-DD HH:MM:SS`` without a zone, read as UTC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from socialrec.features.datasets.files import (
    dataset_dir,
    on_error,
    read_delimited,
    read_raw,
    to_table,
)
from socialrec.features.loader import OnError, SourceOptions, register_loader
from socialrec.features.tables import Dataset, ValidationReport, conform
from socialrec.features.validation import DataError, Lines

NAME = "bdsc2023_item_share_sample"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SELF_SHARE = "inviter is the voter (kept as a share, no social tie)"


def _seconds(
    raw: pd.DataFrame, lines: Lines, report: ValidationReport, errors: str, file: str,
) -> tuple[pd.DataFrame, pd.Series]:
    """Unix seconds of the ``timestamp`` column; bad ones refuse the file or drop their rows."""
    when = pd.to_datetime(raw["timestamp"].str.strip(), format=TIME_FORMAT, errors="coerce",
                          utc=True)
    bad = when.isna().to_numpy()
    if bad.any():
        row = int(raw.index[int(np.argmax(bad))])
        error = DataError(file, lines.of(row), "timestamp", "a date-time YYYY-MM-DD HH:MM:SS",
                          got=raw["timestamp"].iloc[int(np.argmax(bad))])
        if errors == "refuse":
            raise error
        report.add(file, "column 'timestamp': expected a date-time YYYY-MM-DD HH:MM:SS",
                   int(bad.sum()), str(error))
        raw, when = raw[~bad], when[~bad]
    epoch = pd.Timestamp(0, tz="UTC")
    return raw, (when - epoch) // pd.Timedelta(seconds=1)


class BDSCOptions(SourceOptions):
    """The ``dataset:`` keys this loader reads."""

    on_error: OnError = "refuse"


@register_loader(NAME, options=BDSCOptions)
def load(cfg: dict, root: Path) -> Dataset:
    base = dataset_dir(root, NAME)
    errors = on_error(cfg)
    report = ValidationReport()
    path = base / "item_share_sample.csv"
    raw, lines = read_raw(path, ["inviter_id", "item_id", "voter_id", "timestamp"], report,
                          sep=",", errors=errors)
    raw, seconds = _seconds(raw, lines, report, errors, path.name)
    shares = to_table(raw.assign(ts=seconds), "shares", report, file=path.name, lines=lines,
                      columns={"sharer_id": "inviter_id", "item_id": "item_id",
                               "recipient_id": "voter_id", "ts": "ts"},
                      constants={"joined": True}, errors=errors)

    sent = (shares.groupby(["sharer_id", "item_id", "ts"], sort=False).size()
            .rename("value").reset_index())
    interactions = conform(pd.concat([
        sent.rename(columns={"sharer_id": "user_id"}).assign(event="share"),
        shares.rename(columns={"recipient_id": "user_id"})[["user_id", "item_id", "ts"]]
        .assign(event="click", value=1.0),
    ], ignore_index=True), "interactions")

    self_share = (shares["sharer_id"] == shares["recipient_id"]).to_numpy(dtype=bool)
    if self_share.any():
        report.add(path.name, SELF_SHARE, int(self_share.sum()))
    social = conform(shares[~self_share].rename(columns={"sharer_id": "src",
                                                         "recipient_id": "dst"}), "social")

    items = read_delimited(base / "item_info.csv", "items", report, sep=",", errors=errors,
                     columns={"item_id": "item_id", "category": "cate_id",
                              "cate_level1_id": "cate_level1_id", "brand_id": "brand_id",
                              "shop_id": "shop_id"},
                     constants={"price": ""})  # no prices in the source
    n_pairs = len(social[["src", "dst"]].drop_duplicates())
    notes = [
        "Alibaba item-sharing SAMPLE (30,134 records of CAAI-BDSC2023): a smoke-test sample, not a "
        "benchmark. Shares: inviter -> voter, joined = True (the voter clicked).",
        "Interactions: inviter 'share' (one per inviter, item and second; value = voters "
        "reached), voter 'click'. Times read as UTC (the source gives no zone).",
        f"No friendship graph: social = one row per share record (inviter -> voter, weight 1, ts = "
        f"share time; {n_pairs:,} distinct pairs), directed. A temporal split must keep only rows "
        "with ts <= its cut, so ties come from training records only.",
    ]
    return Dataset(
        name=cfg.get("name") or NAME,
        interactions=interactions,
        social=social,
        shares=shares,
        items=items,
        social_symmetric=False,
        notes=notes,
        report=report,
    )
