"""``dataset.source: tables``: the canonical tables, splits and tie strengths a feature job wrote
as Parquet (features/spark_job.py; ``socialrec data build-tables``), read back as a
:class:`~socialrec.features.tables.Dataset` whose split is the one the job cut
(``split.method: given``).

Options (``dataset:`` section): ``path``, the job's output folder (absolute, or relative to the
current directory).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from socialrec.features.loader import SourceOptions, register_loader
from socialrec.features.tables import SCHEMAS, Dataset, ValidationReport, conform

SPLIT_PARTS = ("train", "valid", "test", "social", "train_shares", "valid_shares", "test_shares")
PART_TABLE = {"train": "interactions", "valid": "interactions", "test": "interactions",
              "social": "social", "train_shares": "shares", "valid_shares": "shares",
              "test_shares": "shares"}


class TablesOptions(SourceOptions):
    path: str


def read_parquet_table(path: Path, table: str) -> pd.DataFrame:
    frame = conform(pd.read_parquet(path), table)
    for col in frame.columns:  # side information (items, users) is text, as the loaders keep it
        if col not in SCHEMAS[table]:
            frame[col] = frame[col].astype("string")
    return frame


@register_loader("tables", options=TablesOptions)
def load(cfg: dict, root: Path) -> Dataset:
    base = Path(str(cfg.get("path", ""))).expanduser()
    manifest_path = base / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"dataset.path: {base} holds no feature tables (no manifest.json); "
                                f"build them with `socialrec data build-tables`")
    manifest = json.loads(manifest_path.read_text())
    tables = {}
    for table in ("interactions", "social", "shares", "items", "users"):
        file = base / "tables" / f"{table}.parquet"
        if file.is_file():
            tables[table] = read_parquet_table(file, table)
    given = {part: read_parquet_table(base / "split" / f"{part}.parquet", PART_TABLE[part])
             for part in SPLIT_PARTS}
    return Dataset(
        name=cfg.get("name") or manifest.get("name") or "tables",
        interactions=tables["interactions"],
        social=tables.get("social", given["social"].iloc[:0]),
        shares=tables.get("shares", given["train_shares"].iloc[:0]),
        items=tables.get("items"),
        users=tables.get("users"),
        social_symmetric=bool(manifest.get("social_symmetric", True)),
        notes=[f"feature tables built by features/spark_job.py: {manifest['protocol']}"],
        report=ValidationReport(),
        given_split=given,
        allowed_splits=("given",),
    )
