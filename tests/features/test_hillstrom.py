"""The Hillstrom loader: the real file when present, refusals on a broken copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from socialrec.features.datasets.hillstrom import NAME, load_hillstrom
from socialrec.features.validation import DataError

HEADER = ("recency,history_segment,history,mens,womens,zip_code,newbie,channel,segment,visit,"
          "conversion,spend")
ROW = '10,"2) $100 - $200",142.44,1,0,Surburban,0,Phone,Womens E-Mail,0,0,0'
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


def write(tmp_path: Path, *rows: str) -> Path:
    (tmp_path / NAME).mkdir()
    (tmp_path / NAME / "hillstrom.csv").write_text("\r\n".join([HEADER, *rows]) + "\r\n")
    return tmp_path


def test_duplicate_rows_are_distinct_customers_and_kept(tmp_path):
    campaign = load_hillstrom(write(tmp_path, ROW, ROW))
    assert len(campaign.frame) == 2 and campaign.features().shape == (2, 12)


@pytest.mark.parametrize(("row", "column"), [
    (ROW.replace("Womens E-Mail", "SMS"), "segment"),
    (ROW.replace("10,", "13,", 1), "recency"),
    (ROW.replace(",0,0,0", ",0,1,0"), "spend"),  # a conversion without spend
])
def test_a_bad_cell_is_refused_naming_line_and_column(tmp_path, row, column):
    with pytest.raises(DataError, match=rf"hillstrom.csv, line 3, column '{column}'"):
        load_hillstrom(write(tmp_path, ROW, row))


def test_skip_drops_and_counts_bad_lines(tmp_path):
    campaign = load_hillstrom(write(tmp_path, ROW, ROW.replace("Phone", "Fax")), on_error="skip")
    assert len(campaign.frame) == 1 and campaign.report.refused


@pytest.mark.skipif(not (REAL / NAME).is_dir(), reason="the real dataset is not here")
def test_the_real_file_matches_its_source_md():
    frame = load_hillstrom(REAL).frame
    assert len(frame) == 64_000
    assert frame.segment.value_counts().to_dict() == {
        "Womens E-Mail": 21_387, "Mens E-Mail": 21_307, "No E-Mail": 21_306}
    assert int(frame.visit.sum()) == 9_394 and int(frame.conversion.sum()) == 578
