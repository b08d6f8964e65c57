"""The real-dataset loaders (features/datasets/) on slices of the real files, and once in full.

Each slice test copies the first lines of every file a loader reads into tmp_path, in the same
directory layout, so that the right counts are known from the slice itself. Skipped when the
shared datasets directory (``<repo>/../shared/datasets``, or env SOCIALREC_DATA_ROOT) is absent.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from socialrec.features.loader import load_dataset
from socialrec.features.splits import make_split
from socialrec.features.tables import SCHEMAS, Dataset
from socialrec.features.validation import DataError

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SOCIALREC_DATA_ROOT") or REPO.parent / "shared" / "datasets")

pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real datasets not available at {DATA} (set SOCIALREC_DATA_ROOT)")


def copy_head(tmp_path: Path, name: str, files: dict[str, int | None]) -> Path:
    """Copy the first ``n`` lines (all for None) of each ``files`` entry of dataset ``name`` into
    ``tmp_path/name``; return ``tmp_path``, the data root to load from."""
    for rel, n in files.items():
        src, dst = DATA / name / rel, tmp_path / name / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        with src.open(encoding="utf-8", newline="") as f:
            lines = f.readlines() if n is None else list(itertools.islice(f, n))
        dst.write_text("".join(lines), encoding="utf-8", newline="")
    return tmp_path


def replace_line(path: Path, line: int, text: str) -> None:
    """Overwrite 1-based ``line`` of ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = text + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def append_lines(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def assert_canonical(dataset: Dataset) -> None:
    frames = {"interactions": dataset.interactions, "social": dataset.social,
              "shares": dataset.shares}
    if dataset.items is not None:
        frames["items"] = dataset.items
    for table, frame in frames.items():
        schema = SCHEMAS[table]
        assert list(frame.columns[: len(schema)]) == list(schema), table
        for col, dtype in schema.items():
            assert str(frame[col].dtype) == dtype, f"{table}.{col}: {frame[col].dtype}"
    for part, frame in (dataset.given_split or {}).items():
        table = "social" if part == "social" else "shares" if part.endswith("shares") else (
            "interactions")
        assert {c: str(t) for c, t in frame.dtypes.items()} == SCHEMAS[table], part


def read_records(path: Path, sep: str = "\t") -> list[list[str]]:
    return [line.split(sep) for line in path.read_text().splitlines() if line]


def tie_pairs(records: list[list[str]]) -> Counter:
    """Unordered (initiator, participant) pairs of group-buy records, counted."""
    return Counter(tuple(sorted((r[0], p))) for r in records for p in r[2:])


def ties_of(dataset: Dataset) -> Counter:
    social = dataset.social
    return Counter({(s, d): int(w) for s, d, w in
                    zip(social["src"], social["dst"], social["weight"], strict=True)})


# --- LastFM ----------------------------------------------------------------------------------

LASTFM = "lastfm_hetrec2011"
LASTFM_FILES = {"raw/user_artists.dat": 201, "raw/user_friends.dat": 101, "raw/artists.dat": 51,
                "split_811/train.tsv": 41, "split_811/valid.tsv": 11, "split_811/test.tsv": 11}


def test_lastfm_slice(tmp_path):
    root = copy_head(tmp_path, LASTFM, LASTFM_FILES)
    ds = load_dataset({"source": LASTFM}, root)
    assert_canonical(ds)
    raw = pd.read_csv(root / LASTFM / "raw/user_artists.dat", sep="\t", dtype=str)
    inter = ds.interactions
    assert len(inter) == 200
    assert set(inter["event"]) == {"click"}
    assert inter["ts"].isna().all()
    assert inter["user_id"].tolist() == raw["userID"].tolist()
    assert inter["value"].tolist() == raw["weight"].astype(float).tolist()
    assert len(ds.social) == 100 and ds.social_symmetric
    assert len(ds.items) == 50 and ds.items["name"].iloc[0] == "MALICE MIZER"
    assert {k: len(v) for k, v in ds.given_split.items()} == {"train": 40, "valid": 10, "test": 10}
    assert ds.report.total_refused == 0


def test_lastfm_without_given_split(tmp_path):
    root = copy_head(tmp_path, LASTFM, LASTFM_FILES)
    assert load_dataset({"source": LASTFM, "split": "none"}, root).given_split is None


def test_lastfm_malformed_weight(tmp_path):
    root = copy_head(tmp_path, LASTFM, LASTFM_FILES)
    replace_line(root / LASTFM / "raw/user_artists.dat", 7, "2\t57\tlots")
    with pytest.raises(DataError) as err:
        load_dataset({"source": LASTFM}, root)
    assert (err.value.file, err.value.line, err.value.column) == ("user_artists.dat", 7, "value")
    assert "lots" in str(err.value)


def test_lastfm_skip_mode_counts_the_bad_line(tmp_path):
    root = copy_head(tmp_path, LASTFM, LASTFM_FILES)
    replace_line(root / LASTFM / "raw/user_artists.dat", 7, "2\t57\tlots")
    ds = load_dataset({"source": LASTFM, "on_error": "skip"}, root)
    assert len(ds.interactions) == 199
    assert ds.report.refused["user_artists.dat"] == {"column 'value': expected a number": 1}


# --- Epinions --------------------------------------------------------------------------------

EPINIONS = "epinions_tang"
EPINIONS_FILES = {"raw_timestamp/ratings.tsv": 301, "raw_timestamp/trust.tsv": 301,
                  "split_temporal/train.tsv": 101, "split_temporal/valid.tsv": 21,
                  "split_temporal/test.tsv": 21}


def test_epinions_slice(tmp_path):
    root = copy_head(tmp_path, EPINIONS, EPINIONS_FILES)
    trust_path = root / EPINIONS / "raw_timestamp/trust.tsv"
    append_lines(trust_path, "2072\t2072\t3")  # a self-trust link, as the full file has 155
    ds = load_dataset({"source": EPINIONS}, root)
    assert_canonical(ds)
    raw = pd.read_csv(root / EPINIONS / "raw_timestamp/ratings.tsv", sep="\t")
    duplicates = int(raw.drop(columns=["helpfulness", "category"]).duplicated().sum())
    assert len(ds.interactions) == 300 - duplicates
    assert set(ds.interactions["event"]) == {"rate"}
    assert ds.interactions["value"].between(1, 5).all()
    assert ds.interactions["ts"].between(1, 11).all()
    assert set(ds.items["item_id"]) == set(raw["item"].astype(str))
    assert not ds.social_symmetric
    assert len(ds.social) == 300 and ds.report.refused["trust.tsv"] == {
        "self-trust link (dropped)": 1}
    assert {k: len(v) for k, v in ds.given_split.items() if k != "social"} == {
        "train": 100, "valid": 20, "test": 20}


def test_epinions_given_split_keeps_only_trust_up_to_the_training_cut(tmp_path):
    root = copy_head(tmp_path, EPINIONS, EPINIONS_FILES)
    ds = load_dataset({"source": EPINIONS, "given_social_max_ts": 8}, root)
    trust = pd.read_csv(root / EPINIONS / "raw_timestamp/trust.tsv", sep="\t")
    later = int((trust["timestamp"] > 8).sum())
    assert later > 0  # the slice has links from periods 9-11, and they must not reach training
    assert (ds.social["ts"] > 8).sum() == later  # the dataset itself keeps them all
    split = make_split(ds, {"method": "given"})
    assert len(split.social) == 300 - later
    assert split.social["ts"].max() <= 8
    assert split.train["ts"].max() <= 8 and split.test["ts"].min() >= 10


def test_epinions_malformed_rating(tmp_path):
    root = copy_head(tmp_path, EPINIONS, EPINIONS_FILES)
    replace_line(root / EPINIONS / "raw_timestamp/ratings.tsv", 12, "1\t12\t3\tfive\t2\t1")
    with pytest.raises(DataError) as err:
        load_dataset({"source": EPINIONS}, root)
    assert (err.value.file, err.value.line, err.value.column) == ("ratings.tsv", 12, "value")


# --- BeiBei ----------------------------------------------------------------------------------

BEIBEI = "beibei_gbgcn"
BEIBEI_FILES = {"invalid.txt": 100, "tune.txt": 300, "test.txt": 300}


def test_beibei_slice(tmp_path):
    root = copy_head(tmp_path, BEIBEI, BEIBEI_FILES)
    ds = load_dataset({"source": BEIBEI}, root)
    assert_canonical(ds)
    tune = read_records(root / BEIBEI / "tune.txt")
    test = read_records(root / BEIBEI / "test.txt")
    slots = sum(len(r) - 2 for r in tune + test)
    events = ds.interactions["event"].value_counts().to_dict()
    assert events == {"share": 100 + 300 + 300, "purchase": 600 + slots, "join": slots}
    assert len(ds.shares) == slots and ds.shares["joined"].all()
    assert ds.interactions["ts"].isna().all()
    given = ds.given_split
    assert len(given["valid"]) == 30 and len(given["test"]) == 300  # one target per record
    assert set(given["valid"]["event"]) == set(given["test"]["event"]) == {"share"}
    # every evaluated record is out of training
    train_pairs = set(zip(given["train"]["user_id"], given["train"]["item_id"], strict=True))
    for part in ("valid", "test"):
        pairs = set(zip(given[part]["user_id"], given[part]["item_id"], strict=True))
        assert not pairs & train_pairs
    assert any("train.txt and social_relation.txt are missing" in n for n in ds.notes)


def test_beibei_ties_come_from_training_tune_records_only(tmp_path):
    root = copy_head(tmp_path, BEIBEI, BEIBEI_FILES)
    # a test record and a pair seen nowhere else: it must never become a tie
    append_lines(root / BEIBEI / "test.txt", "999998\t1\t999999")
    ds = load_dataset({"source": BEIBEI, "valid_fraction": 0.5, "valid_seed": 3}, root)
    tune = read_records(root / BEIBEI / "tune.txt")
    valid = set(zip(ds.given_split["valid"]["user_id"], ds.given_split["valid"]["item_id"],
                    strict=True))
    assert len(valid) == 150
    train_records = [r for r in tune if (r[0], r[1]) not in valid]
    assert ties_of(ds) == tie_pairs(train_records)  # exactly: weights are co-group counts
    assert ("999998", "999999") not in ties_of(ds)
    test_only = tie_pairs(read_records(root / BEIBEI / "test.txt")).keys() - tie_pairs(tune).keys()
    assert test_only and not test_only & ties_of(ds).keys()
    split = make_split(ds, {"method": "given"})
    assert ties_of(ds) == Counter({(s, d): int(w) for s, d, w in zip(
        split.social["src"], split.social["dst"], split.social["weight"], strict=True)})
    assert len(split.test_shares) == sum(
        len(r) - 2 for r in read_records(root / BEIBEI / "test.txt"))


def test_beibei_validation_draw_is_seeded(tmp_path):
    root = copy_head(tmp_path, BEIBEI, BEIBEI_FILES)

    def valid(seed: int) -> list[str]:
        cfg = {"source": BEIBEI, "valid_seed": seed}
        return sorted(load_dataset(cfg, root).given_split["valid"]["user_id"])

    assert valid(1) == valid(1) != valid(2)


def test_beibei_without_ties(tmp_path):
    root = copy_head(tmp_path, BEIBEI, BEIBEI_FILES)
    ds = load_dataset({"source": BEIBEI, "ties_from": "none"}, root)
    assert len(ds.social) == 0 and len(ds.given_split["social"]) == 0
    assert len(ds.given_split["valid"]) == 300  # tune.txt, the GBGCN roles
    train = ds.given_split["train"]
    assert set(train["event"]) == {"share"} and len(train) == 100  # failed groups only


@pytest.mark.parametrize(("file", "line", "text", "column"), [
    ("tune.txt", 5, "26985\t5267", None),  # a successful group without participants
    ("test.txt", 9, "9906\tx3962\t83331", "item"),
    ("invalid.txt", 4, "15169\t98\t5", None),  # a failed group with a participant
])
def test_beibei_malformed_record(tmp_path, file, line, text, column):
    root = copy_head(tmp_path, BEIBEI, BEIBEI_FILES)
    replace_line(root / BEIBEI / file, line, text)
    with pytest.raises(DataError) as err:
        load_dataset({"source": BEIBEI}, root)
    assert (err.value.file, err.value.line, err.value.column) == (file, line, column)


# --- Brightkite ------------------------------------------------------------------------------

BRIGHTKITE = "brightkite_gb_j2prec"
BRIGHTKITE_FILES = {"train_id.txt": 400, "test.txt": 60, "tune.txt": 60,
                    "social_relation.txt": 3000}


def test_brightkite_slice(tmp_path):
    root = copy_head(tmp_path, BRIGHTKITE, BRIGHTKITE_FILES)
    ds = load_dataset({"source": BRIGHTKITE}, root)
    assert_canonical(ds)
    records = read_records(root / BRIGHTKITE / "train_id.txt")
    test = read_records(root / BRIGHTKITE / "test.txt", sep=" ")
    slots = sum(len(r) - 2 for r in records + test)
    assert ds.interactions["event"].value_counts().to_dict() == {
        "share": 460, "purchase": 460 + slots, "join": slots}
    assert len(ds.shares) == slots and ds.shares["joined"].all()
    assert len(ds.social) == 3000 and ds.social_symmetric
    given = ds.given_split
    # validation comes from train_id records (one per initiator with 2+ records), never from test
    by_initiator = Counter(r[0] for r in records)
    assert len(given["valid"]) == sum(1 for n in by_initiator.values() if n >= 2)
    record_pairs = {(r[0], r[1]) for r in records}
    valid_pairs = set(zip(given["valid"]["user_id"], given["valid"]["item_id"], strict=True))
    assert valid_pairs <= record_pairs
    assert given["test"]["user_id"].tolist() == [r[0] for r in test]
    assert len(given["train_shares"]) + len(given["valid_shares"]) == sum(
        len(r) - 2 for r in records)
    assert any("tune.txt is identical to test.txt" in n for n in ds.notes)


def test_brightkite_malformed_participant(tmp_path):
    root = copy_head(tmp_path, BRIGHTKITE, BRIGHTKITE_FILES)
    replace_line(root / BRIGHTKITE / "test.txt", 3, "2 27 30 4O 180")
    with pytest.raises(DataError) as err:
        load_dataset({"source": BRIGHTKITE}, root)
    assert (err.value.file, err.value.line, err.value.column) == ("test.txt", 3, "participant 2")


# --- BDSC 2023 item shares -------------------------------------------------------------------

BDSC = "bdsc2023_item_share_sample"
BDSC_FILES = {"item_share_sample.csv": 501, "item_info.csv": None}


def test_bdsc_slice(tmp_path):
    root = copy_head(tmp_path, BDSC, BDSC_FILES)
    ds = load_dataset({"source": BDSC}, root)
    assert_canonical(ds)
    raw = pd.read_csv(root / BDSC / "item_share_sample.csv", dtype=str)
    assert len(ds.shares) == 500 and ds.shares["joined"].all()
    assert ds.shares["sharer_id"].tolist() == raw["inviter_id"].tolist()
    first = pd.Timestamp(raw["timestamp"].iloc[0], tz="UTC").timestamp()
    assert ds.shares["ts"].iloc[0] == first
    events = ds.interactions.groupby("event")["value"].agg(["size", "sum"])
    assert events.loc["click", "size"] == 500
    sends = raw[["inviter_id", "item_id", "timestamp"]].drop_duplicates()
    assert events.loc["share", "size"] == len(sends) and events.loc["share", "sum"] == 500
    assert len(ds.social) == 500 and not ds.social_symmetric
    assert ds.items.set_index("item_id").loc[raw["item_id"].iloc[0], "category"] == (
        pd.read_csv(root / BDSC / "item_info.csv", dtype=str)
        .set_index("item_id").loc[raw["item_id"].iloc[0], "cate_id"])


def test_bdsc_temporal_split_rebuilds_ties_from_training_records(tmp_path):
    root = copy_head(tmp_path, BDSC, BDSC_FILES)
    ds = load_dataset({"source": BDSC}, root)
    split = make_split(ds, {"method": "temporal", "ratios": [0.8, 0.1, 0.1]})
    assert len(split.valid_shares) and len(split.test_shares)
    assert split.social["ts"].max() <= split.cut_ts
    key = ["sharer_id", "recipient_id", "ts"]
    train = split.train_shares[key].rename(columns={"sharer_id": "src", "recipient_id": "dst"})
    social = split.social[["src", "dst", "ts"]]
    assert social.merge(train, how="left", indicator=True)["_merge"].eq("both").all()
    assert len(social) == len(train)


def test_bdsc_malformed_timestamp(tmp_path):
    root = copy_head(tmp_path, BDSC, BDSC_FILES)
    path = root / BDSC / "item_share_sample.csv"
    row = path.read_text().splitlines()[3].split(",")
    replace_line(path, 4, ",".join([*row[:3], "yesterday"]))
    with pytest.raises(DataError) as err:
        load_dataset({"source": BDSC}, root)
    assert (err.value.file, err.value.line, err.value.column) == (
        "item_share_sample.csv", 4, "timestamp")


def test_missing_dataset_directory_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="SOCIALREC_DATA_ROOT"):
        load_dataset({"source": LASTFM}, tmp_path)


# --- full datasets: the headline figures of each SOURCE.md -----------------------------------


def _users(ds: Dataset) -> int:
    return ds.interactions["user_id"].nunique()


def _items(ds: Dataset) -> int:
    return ds.interactions["item_id"].nunique()


FULL = {
    LASTFM: lambda ds: {
        "interactions": (len(ds.interactions), 92_834), "users": (_users(ds), 1_892),
        "items": (_items(ds), 17_632), "social rows": (len(ds.social), 25_434),
        "split_811": (sum(len(v) for v in ds.given_split.values()), 92_834)},
    EPINIONS: lambda ds: {
        # 922,267 rows of which 5,445 exact duplicates; 300,548 trust rows - 457 duplicates - 155
        # self-loops
        "ratings": (len(ds.interactions) + ds.report.refused["ratings.tsv"][
            "exact duplicate row (dropped)"], 922_267),
        "users": (_users(ds), 22_164), "items": (_items(ds), 296_277),
        "trust": (len(ds.social) + sum(ds.report.refused["trust.tsv"].values()), 300_548),
        "train/valid/test": (tuple(len(ds.given_split[k]) for k in ("train", "valid", "test")),
                             (774_953, 64_320, 73_168))},
    BEIBEI: lambda ds: {
        "group buys": ((ds.interactions["event"] == "share").sum(), 211_291 + 154_184 + 178_642),
        "test records": (len(ds.given_split["test"]), 178_642),
        "max user id": (ds.interactions["user_id"].astype(int).max(), 190_079)},
    BRIGHTKITE: lambda ds: {
        "group buys": ((ds.interactions["event"] == "share").sum(), 16_361 + 1_190),
        "train_id participant slots": (
            len(ds.given_split["train_shares"]) + len(ds.given_split["valid_shares"]), 22_537),
        "social rows": (len(ds.social), 101_150),
        "social users": (ds.social["src"].nunique(), 8_437)},
    BDSC: lambda ds: {
        "records": (len(ds.shares), 30_134), "users": (_users(ds), 20_539),
        "items": (_items(ds), 25_364), "item_info rows": (len(ds.items), 25_364),
        "inviter -> voter pairs": (len(ds.social[["src", "dst"]].drop_duplicates()), 20_272)},
}


@pytest.mark.slow
def test_full_datasets_match_their_source_md():
    seconds = {}
    for name, stats in FULL.items():
        t = time.perf_counter()
        ds = load_dataset({"source": name}, DATA)
        seconds[name] = time.perf_counter() - t
        for what, (got, expected) in stats(ds).items():
            assert got == expected, f"{name} {what}: {got} != {expected}"
    assert sum(seconds.values()) < 30, seconds
