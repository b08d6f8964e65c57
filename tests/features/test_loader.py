import importlib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from socialrec.features import loader
from socialrec.features.loader import load_dataset, register_loader
from socialrec.features.tables import Dataset
from socialrec.features.validation import DataError

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
dataset:
  name: tiny
  source: files
  social_symmetric: false
  files:
    interactions:
      path: data/events.csv
      columns: {user_id: who, item_id: sku, ts: when, value: qty}
      constants: {event: purchase}
    social:
      path: data/follows.tsv
      header: false
      columns: {src: 0, dst: 1}
    items:
      path: data/items.csv
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tiny(tmp_path):
    write(tmp_path / "data/events.csv", "who,sku,when,qty,channel\n"
          "alice,p1,100,1,web\nbob,p2,200,2,app\nalice,p2,300,1,web\n")
    write(tmp_path / "data/follows.tsv", "alice\tbob\nbob\tcarol\n")
    write(tmp_path / "data/items.csv",
          "item_id,category,price,brand\np1,shoes,9.5,acme\np2,hats,,\n")
    write(tmp_path / "tiny.yaml", CONFIG)
    return tmp_path


def dataset_cfg(root: Path) -> dict:
    return yaml.safe_load((root / "tiny.yaml").read_text())["dataset"]


def load_events(tmp_path: Path, text: str, **spec) -> Dataset:
    write(tmp_path / "events.csv", text)
    files = {"interactions": {"path": "events.csv", **spec}}
    return load_dataset({"source": "files", "files": files}, config_dir=tmp_path)


def refused(tmp_path: Path, text: str, **spec) -> DataError:
    with pytest.raises(DataError) as info:
        load_events(tmp_path, text, **spec)
    return info.value


def test_round_trip_from_csv_and_yaml_mapping(tiny):
    ds = load_dataset(dataset_cfg(tiny), config_dir=tiny)
    assert ds.name == "tiny" and ds.social_symmetric is False
    inter = ds.interactions
    assert inter[["user_id", "item_id", "event"]].values.tolist() == [
        ["alice", "p1", "purchase"], ["bob", "p2", "purchase"], ["alice", "p2", "purchase"]]
    assert inter["ts"].tolist() == [100, 200, 300]
    assert inter["value"].tolist() == [1.0, 2.0, 1.0]
    assert list(inter.columns) == ["user_id", "item_id", "event", "ts", "value"]
    assert ds.social[["src", "dst"]].values.tolist() == [["alice", "bob"], ["bob", "carol"]]
    assert ds.social["weight"].tolist() == [1.0, 1.0]
    assert ds.items["category"].tolist() == ["shoes", "hats"]
    assert ds.items["price"].iloc[0] == 9.5 and pd.isna(ds.items["price"].iloc[1])
    assert ds.items["brand"].iloc[0] == "acme"  # items keep side columns
    assert ds.shares.empty and ds.users is None
    assert ds.report.total_refused == 0


def test_paths_resolve_against_the_config_dir_or_the_data_root(tiny, tmp_path):
    cfg = dataset_cfg(tiny)
    cfg["files"]["interactions"]["path"] = "{root}/events.csv"
    data_root = tiny / "data"
    ds = load_dataset(cfg, root=data_root, config_dir=tiny)
    assert len(ds.interactions) == 3
    # a config reader that prefixed the file's directory does not break {root}
    cfg["files"]["interactions"]["path"] = str(tiny / "{root}/events.csv")
    assert len(load_dataset(cfg, root=data_root, config_dir=tiny).interactions) == 3
    cfg["files"] = {"interactions": {**cfg["files"]["interactions"],
                                     "path": str(tiny / "data/events.csv")}}  # absolute
    assert len(load_dataset(cfg, config_dir=Path("/nonexistent")).interactions) == 3


def test_bad_timestamp_names_file_line_and_column(tmp_path):
    err = refused(tmp_path, "u,i,e,ts\na,x,view,1\nb,y,view,2\nc,z,view,yesterday\n",
                  columns={"user_id": "u", "item_id": "i", "event": "e"})
    assert str(err) == ("events.csv, line 4, column 'ts': expected an integer Unix timestamp, "
                        "got 'yesterday'")


@pytest.mark.parametrize(("text", "line", "column", "expected"), [
    ("user_id,item_id,event,value\na,x,view,1\nb,y,view,many\n", 3, "value", "a number"),
    ("user_id,item_id,event\na,x,view\nb,y,wishlist\n", 3, "event", "an event kind"),
    ("user_id,item_id,event\na,,view\n", 2, "item_id", "a non-empty id"),
    ("user_id,item_id,event\na,x,view\n\n\nb,y,??\n", 5, "event", "an event kind"),  # blank lines
])
def test_each_bad_value_is_refused_at_its_line(tmp_path, text, line, column, expected):
    err = refused(tmp_path, text)
    assert (err.file, err.line, err.column) == ("events.csv", line, column)
    assert err.expected.startswith(expected)


def test_wrong_number_of_fields_is_refused_at_its_line(tmp_path):
    err = refused(tmp_path, "user_id,item_id,event\na,x,view\nb,y,view,extra\n")
    assert (err.file, err.line, err.column) == ("events.csv", 3, None)
    assert str(err) == "events.csv, line 3: expected 3 fields separated by ',', got '4 fields'"


def test_missing_mapped_column_names_it_and_the_columns_found(tmp_path):
    err = refused(tmp_path, "who,sku,kind\na,x,view\n",
                  columns={"user_id": "who", "item_id": "product", "event": "kind"})
    assert (err.line, err.column) == (1, "product")
    assert err.found == ["who", "sku", "kind"]
    assert "columns found: who, sku, kind" in str(err)


def test_missing_required_column_names_it_and_the_columns_found(tmp_path):
    err = refused(tmp_path, "user_id,item_id\na,x\n")  # no event column and no constant
    assert (err.line, err.column) == (1, "event")
    assert err.found == ["user_id", "item_id"]


def test_skip_mode_counts_every_bad_line_and_keeps_line_numbers(tmp_path):
    text = ("user_id,item_id,event,ts\n"
            "a,x,view,1\n"          # line 2
            "b,y,view,2,extra\n"    # line 3: wrong field count, skipped by the reader
            "c,z,view,soon\n"       # line 4: bad ts
            "d,w,bogus,4\n"         # line 5: bad event
            "a,x,view,1\n"          # line 6: exact duplicate of line 2
            "e,v,click,6\n")        # line 7
    ds = load_events(tmp_path, text, on_error="skip")
    assert ds.interactions["user_id"].tolist() == ["a", "e"]
    counts = ds.report.refused["events.csv"]
    assert counts["wrong number of fields"] == 1
    assert counts["column 'ts': expected an integer Unix timestamp"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("column 'event'")) == 1
    assert counts["exact duplicate row (dropped)"] == 1
    assert ds.report.total_refused == 4
    examples = "\n".join(ds.report.examples["events.csv"])
    assert "events.csv, line 3: expected 4 fields" in examples
    assert "events.csv, line 4, column 'ts'" in examples
    assert "events.csv, line 5, column 'event'" in examples
    assert "events.csv, line 6: an exact duplicate" in examples


def test_parquet_errors_name_the_row(tmp_path):
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "ts": [1, 2],
                  "kind": ["view", "poke"]}).to_parquet(tmp_path / "events.parquet")
    files = {"interactions": {"path": "events.parquet", "columns": {"event": "kind"}}}
    with pytest.raises(DataError, match=r"events.parquet, row 2, column 'event'"):
        load_dataset({"source": "files", "files": files}, config_dir=tmp_path)
    files["interactions"]["on_error"] = "skip"
    ds = load_dataset({"source": "files", "files": files}, config_dir=tmp_path)
    assert ds.interactions["ts"].tolist() == [1]


def test_config_mistakes_are_named(tmp_path):
    write(tmp_path / "events.dat", "user_id,item_id,event\na,x,view\n")

    def load(files):
        return load_dataset({"source": "files", "files": files}, config_dir=tmp_path)
    with pytest.raises(ValueError, match=r"format of events\.dat"):
        load({"interactions": {"path": "events.dat"}})
    with pytest.raises(ValueError, match=r"dataset\.files\.interactions\.seperator: extra inputs"):
        load({"interactions": {"path": "events.dat", "format": "csv", "seperator": ";"}})
    with pytest.raises(ValueError, match="unknown table"):
        load({"interactions": {"path": "events.dat", "format": "csv"}, "friends": {"path": "x"}})
    with pytest.raises(ValueError, match="'colour' is not a column of interactions"):
        load({"interactions": {"path": "events.dat", "format": "csv", "columns": {"colour": "c"}}})
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        load({"interactions": {"path": "missing.csv"}})
    with pytest.raises(ValueError, match="'interactions' table is required"):
        load({})


def test_registered_loaders_are_found_by_source_name(monkeypatch, tmp_path):
    # the real loaders register on import: import them first, so that they land in the real
    # registry and not in this test's empty stand-in (which would lose them for later tests)
    importlib.import_module("socialrec.features.datasets")
    monkeypatch.setattr(loader, "DATASET_LOADERS", {})
    seen = {}

    @register_loader("toy")
    def load_toy(cfg: dict, root: Path) -> Dataset:
        seen.update(cfg=cfg, root=root)
        return Dataset(name="toy")

    ds = load_dataset({"source": "toy", "option": 1}, root=tmp_path)
    assert ds.name == "toy" and seen == {"cfg": {"source": "toy", "option": 1}, "root": tmp_path}
    with pytest.raises(ValueError, match="already registered"):
        register_loader("toy")(lambda cfg, root: Dataset(name="other"))
    with pytest.raises(ValueError, match="unknown source 'nope'; known: synthetic, files, "):
        load_dataset({"source": "nope"}, root=tmp_path)


def test_synthetic_source():
    ds = load_dataset({"name": "demo", "source": "synthetic",
                       "synthetic": {"n_users": 300, "n_items": 100, "n_communities": 5}})
    assert ds.name == "demo" and ds.users["user_id"].nunique() == 300
    with pytest.raises(ValueError, match=r"dataset\.synthetic"):
        load_dataset({"source": "synthetic", "synthetic": {"n_user": 3}})


def test_data_root_from_env_or_config(monkeypatch, tmp_path):
    monkeypatch.delenv(loader.DATA_ROOT_ENV, raising=False)
    default = loader.data_root({"root": "../shared/datasets"})
    assert default == (REPO / "../shared/datasets").resolve()
    monkeypatch.setenv(loader.DATA_ROOT_ENV, str(tmp_path))
    assert loader.data_root({"root": "elsewhere"}) == tmp_path


def test_generic_csv_example_reads_lastfm():
    root = loader.data_root({"root": "../shared/datasets"})
    if not (root / "lastfm_hetrec2011/raw/user_artists.dat").is_file():
        pytest.skip(f"LastFM raw files not under {root} (set SOCIALREC_DATA_ROOT)")
    cfg = yaml.safe_load((REPO / "configs/generic_csv.yaml").read_text())
    assert {"dataset", "split"} <= set(cfg)
    ds = load_dataset(cfg["dataset"], root=root, config_dir=REPO / "configs")
    # counts from lastfm_hetrec2011/SOURCE.md
    assert len(ds.interactions) == 92_834 and len(ds.social) == 25_434
    assert ds.interactions["user_id"].nunique() == 1_892
    assert ds.interactions["item_id"].nunique() == 17_632
    assert set(ds.interactions["event"]) == {"click"}
    assert ds.interactions["value"].min() >= 1 and ds.interactions["ts"].isna().all()
    assert ds.report.total_refused == 0 and ds.social_symmetric

