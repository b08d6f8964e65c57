"""LastFM (HetRec 2011, lastfm-2k): users' listening counts of artists and mutual friendships.

Cantador, Brusilovsky, Kuflik, HetRec 2011 workshop (RecSys 2011); the social-recommendation
benchmark of SocialLGN (Liao et al., Information Sciences 2022). Files: see SOURCE.md in
``<root>/lastfm_hetrec2011``.

Options (``dataset:`` section): ``split: split_811`` (default) sets ``given_split`` from the
project's seeded per-user 80/10/10 split in ``split_811/``; ``split: none`` leaves splitting to
``split.method``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from socialrec.features.datasets.files import dataset_dir, on_error, option, read_delimited
from socialrec.features.loader import OnError, SourceOptions, register_loader
from socialrec.features.tables import Dataset, ValidationReport

NAME = "lastfm_hetrec2011"
SPLITS = ("split_811", "none")


def _listening(
    path: Path, report: ValidationReport, errors: str, columns: tuple[str, str, str],
) -> pd.DataFrame:
    user, artist, weight = columns
    return read_delimited(path, "interactions", report, errors=errors,
                    columns={"user_id": user, "item_id": artist, "value": weight},
                    constants={"event": "click"})


class LastFMOptions(SourceOptions):
    """The ``dataset:`` keys this loader reads (module docstring)."""

    split: Literal["split_811", "none"] = "split_811"
    on_error: OnError = "refuse"


@register_loader(NAME, options=LastFMOptions)
def load(cfg: dict, root: Path) -> Dataset:
    base = dataset_dir(root, NAME)
    errors = on_error(cfg)
    split = option(cfg, "split", SPLITS, "split_811")
    report = ValidationReport()

    interactions = _listening(base / "raw" / "user_artists.dat", report, errors,
                              ("userID", "artistID", "weight"))
    social = read_delimited(base / "raw" / "user_friends.dat", "social", report, errors=errors,
                      columns={"src": "userID", "dst": "friendID"})
    items = read_delimited(base / "raw" / "artists.dat", "items", report, errors=errors,
                     # price: "" (no price) because tables.conform cannot fill a missing
                     # float column with <NA>.
                     columns={"item_id": "id", "name": "name"}, constants={"price": ""})

    notes = [
        "LastFM HetRec 2011: event 'click' = a user listened to an artist, value = listening "
        "count; no timestamps (ts is null), so temporal splits do not apply.",
        "Friendship is mutual: user_friends.dat lists every pair in both directions.",
    ]
    given = None
    if split == "split_811":
        given = {
            part: _listening(base / "split_811" / f"{part}.tsv", report, errors,
                             ("user_id", "item_id", "weight"))
            for part in ("train", "valid", "test")
        }
        notes.append("given split: split_811/ (per-user random 80/10/10, numpy default_rng(2026); "
                     "RecBole-GNN's LastFM protocol); use split.method: given.")
    return Dataset(
        name=cfg.get("name") or NAME,
        interactions=interactions,
        social=social,
        items=items,
        social_symmetric=True,
        notes=notes,
        report=report,
        given_split=given,
    )

