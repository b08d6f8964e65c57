"""Hillstrom / MineThatData e-mail campaign (2008): a real randomised experiment with two treatment
arms (men's, women's e-mail) and a control (no e-mail); outcomes visit, conversion and spend in the
two weeks after. ``<root>/hillstrom_minethatdata/`` (SOURCE.md: origin, caveats).

Not a recommendation dataset (no user ids, no items): it is read as a :class:`Campaign` table for
the uplift benchmarks (training/uplift_bench.py), through the same reader and the same refusals
as every dataset: a malformed line or cell stops the load naming the file, the line, the column
and what was expected (``on_error="skip"`` drops and counts them instead). Rows that repeat
another row exactly are kept: the file has no customer id, and SOURCE.md documents 6,562 such
rows as distinct customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialrec.features.datasets.files import dataset_dir, read_raw
from socialrec.features.tables import ValidationReport
from socialrec.features.validation import ON_ERROR, DataError, Lines

NAME = "hillstrom_minethatdata"
FILE = "hillstrom.csv"
CONTROL = "No E-Mail"
ARMS = ("Mens E-Mail", "Womens E-Mail", CONTROL)
HISTORY_SEGMENTS = ("1) $0 - $100", "2) $100 - $200", "3) $200 - $350", "4) $350 - $500",
                    "5) $500 - $750", "6) $750 - $1,000", "7) $1,000 +")
ZIP_CODES = ("Urban", "Surburban", "Rural")
CHANNELS = ("Phone", "Web", "Multichannel")
#: column -> (kind, allowed): int with a range, 0/1, float >= 0, or one of some levels
COLUMNS: dict[str, tuple[str, tuple[Any, ...] | None]] = {
    "recency": ("int", (1, 12)),
    "history_segment": ("level", HISTORY_SEGMENTS),
    "history": ("float", None),
    "mens": ("flag", None),
    "womens": ("flag", None),
    "zip_code": ("level", ZIP_CODES),
    "newbie": ("flag", None),
    "channel": ("level", CHANNELS),
    "segment": ("level", ARMS),
    "visit": ("flag", None),
    "conversion": ("flag", None),
    "spend": ("float", None),
}
OUTCOMES = ("visit", "conversion", "spend")


@dataclass
class Campaign:
    """A randomised campaign: one row per customer with features, arm and outcomes."""

    frame: pd.DataFrame
    report: ValidationReport
    control: str = CONTROL

    def features(self) -> pd.DataFrame:
        """Numeric features (levels one-hot), as a learner takes them."""
        f = self.frame
        out = pd.DataFrame({
            "recency": f.recency, "history": f.history, "mens": f.mens, "womens": f.womens,
            "newbie": f.newbie,
            "history_segment": f.history_segment.map(
                {s: i for i, s in enumerate(HISTORY_SEGMENTS)}),
        })
        for column, levels in (("zip_code", ZIP_CODES), ("channel", CHANNELS)):
            for level in levels:
                out[f"{column}_{level.lower()}"] = (f[column] == level).astype(np.int8)
        return out.astype(np.float32)


def _convert(raw: pd.Series, kind: str, allowed: tuple[Any, ...] | None
             ) -> tuple[pd.Series, np.ndarray, str]:
    """Values, a mask of bad cells, and what was expected."""
    if kind == "level":
        levels = tuple(allowed or ())
        return raw, ~raw.isin(levels).to_numpy(), f"one of {', '.join(levels)}"
    number = pd.to_numeric(raw, errors="coerce")
    bad = number.isna().to_numpy().copy()
    if kind == "float":
        bad |= (number < 0).to_numpy()
        return number.astype("float64"), bad, "a number >= 0"
    lo, hi = allowed if kind == "int" and allowed is not None else (0, 1)
    bad |= ~number.isin(np.arange(lo, hi + 1)).to_numpy()
    what = "0 or 1" if kind == "flag" else f"an integer in {lo}..{hi}"
    return number.fillna(0).astype("int64"), bad, what


def load_hillstrom(root: Path, on_error: str = "refuse") -> Campaign:
    """Read and validate ``<root>/hillstrom_minethatdata/hillstrom.csv``."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    report = ValidationReport()
    path = dataset_dir(root, NAME) / FILE
    raw, lines = read_raw(path, list(COLUMNS), report, sep=",", errors=on_error)
    positions = raw.index.to_numpy()
    converted, first_bad = {}, np.full(len(raw), -1)
    expected = {}
    for j, (column, (kind, allowed)) in enumerate(COLUMNS.items()):
        converted[column], bad, expected[column] = _convert(raw[column].str.strip(), kind,
                                                            allowed)
        first_bad[(first_bad < 0) & bad] = j
    frame = pd.DataFrame(converted)
    bad_rows = np.flatnonzero(first_bad >= 0)
    if len(bad_rows):
        names = list(COLUMNS)
        if on_error == "refuse":
            row = bad_rows[0]
            column = names[first_bad[row]]
            raise DataError(FILE, lines.of(int(positions[row])), column, expected[column],
                            got=raw[column].iloc[row])
        for j in np.unique(first_bad[bad_rows]):
            column = names[j]
            report.add(FILE, f"column '{column}': expected {expected[column]}",
                       int((first_bad[bad_rows] == j).sum()))
        frame = frame[first_bad < 0]
    _check_consistency(frame, lines, positions[first_bad < 0])
    return Campaign(frame.reset_index(drop=True), report)


def _check_consistency(frame: pd.DataFrame, lines: Lines, positions: np.ndarray) -> None:
    """Spend only with a conversion, a conversion only with a visit (SOURCE.md's checks)."""
    for bad, column, what in (
        ((frame.conversion == 1) != (frame.spend > 0), "spend", "spend > 0 exactly when "
         "conversion = 1"),
        ((frame.conversion == 1) & (frame.visit == 0), "visit", "a visit with every conversion"),
    ):
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise DataError(FILE, lines.of(int(positions[row])), column, what,
                            got=frame[column].iloc[row])
