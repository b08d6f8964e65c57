"""The Spark feature job (features/spark_job.py) against the pandas path, in a real ``local[2]``
Spark session: the same canonical tables, the same temporal split, the same tie strengths, on
event logs of a few thousand rows written as CSV and Parquet under other column names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from socialrec.features.datasets.tables import load as load_tables
from socialrec.features.graph import build_graph
from socialrec.features.loader import load_files
from socialrec.features.spark_job import build_tables, spark_session
from socialrec.features.splits import make_split
from socialrec.features.synthetic import generate
from socialrec.features.tie_strength import graph_tie_strength
from socialrec.features.validation import DataError

SPLIT = {"method": "temporal", "ratios": [0.8, 0.1, 0.1]}


def write_event_logs(folder: Path) -> dict:
    """A small synthetic world as a platform's logs: its own column names, CSV and Parquet, messy
    cells (case, blanks around ids, exact duplicate rows). Returns the ``dataset`` config."""
    world = generate(n_users=150, n_items=60, n_communities=3, seed=4)
    folder.mkdir(parents=True, exist_ok=True)
    inter = world.interactions.rename(columns={"user_id": "uid", "item_id": "sku",
                                               "event": "action", "ts": "time"})
    inter["action"] = inter["action"].str.upper()
    inter["uid"] = " " + inter["uid"].astype(str)
    inter = pd.concat([inter, inter.iloc[:25]])  # repeated log lines
    inter.drop(columns=["value"]).to_csv(folder / "events.csv", index=False)
    world.social.to_parquet(folder / "friends.parquet")
    world.shares.rename(columns={"sharer_id": "from", "recipient_id": "to"}).to_csv(
        folder / "shares.csv", index=False)
    world.items.to_csv(folder / "items.tsv", sep="\t", index=False)
    world.users.to_parquet(folder / "users.parquet")
    return {
        "name": "logs",
        "source": "files",
        "social_symmetric": True,
        "files": {
            "interactions": {"path": str(folder / "events.csv"),
                             "columns": {"user_id": "uid", "item_id": "sku", "event": "action",
                                         "ts": "time"}},
            "social": {"path": str(folder / "friends.parquet")},
            "shares": {"path": str(folder / "shares.csv"),
                       "columns": {"sharer_id": "from", "recipient_id": "to"}},
            "items": {"path": str(folder / "items.tsv")},
            "users": {"path": str(folder / "users.parquet")},
        },
    }


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", memory="1g", partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def both(spark, tmp_path_factory):
    """(pandas dataset, pandas split, tables dataset read back, job summary, out folder)."""
    tmp = tmp_path_factory.mktemp("logs")
    dataset_cfg = write_event_logs(tmp / "logs")
    pandas_ds = load_files(dataset_cfg, tmp, tmp)
    pandas_split = make_split(pandas_ds, SPLIT)
    out = tmp / "tables"
    summary = build_tables(spark, {"dataset": dataset_cfg, "split": SPLIT}, out, tmp, tmp)
    spark_ds = load_tables({"path": str(out)}, tmp)
    return pandas_ds, pandas_split, spark_ds, summary, out


@pytest.mark.slow
def test_the_spark_tables_are_the_pandas_tables(both):
    pandas_ds, _, spark_ds, summary, _ = both
    assert len(pandas_ds.interactions) > 2000  # a few thousand rows, duplicates dropped
    assert summary.rows["interactions"] == len(pandas_ds.interactions)
    for table in ("interactions", "social", "shares", "items", "users"):
        pd.testing.assert_frame_equal(getattr(spark_ds, table), getattr(pandas_ds, table),
                                      obj=table)


@pytest.mark.slow
def test_the_spark_split_is_the_pandas_split(both):
    _, split, spark_ds, summary, _ = both
    given = spark_ds.given_split
    assert given is not None
    for part in ("train", "valid", "test", "social", "train_shares", "valid_shares",
                 "test_shares"):
        pd.testing.assert_frame_equal(given[part], getattr(split, part).reset_index(drop=True),
                                      obj=part)
    assert summary.protocol == split.protocol
    # and train reads it as the given split
    resplit = make_split(spark_ds, {"method": "given"})
    pd.testing.assert_frame_equal(resplit.train, split.train.reset_index(drop=True))


@pytest.mark.slow
def test_the_spark_tie_strengths_are_the_pandas_ones(both):
    pandas_ds, split, _, _, out = both
    graph = build_graph(pandas_ds, split)
    expected = graph_tie_strength(graph).tocoo()
    ties = pd.read_parquet(out / "tie_strength.parquet")
    rows = graph.users.to_index_series(ties["src"])
    cols = graph.users.to_index_series(ties["dst"])
    assert len(ties) == expected.nnz and expected.nnz > 100
    got = np.asarray(graph.social.__class__((ties["weight"], (rows, cols)),
                                            shape=expected.shape).todense())
    np.testing.assert_allclose(got, expected.todense(), rtol=1e-6)


def test_a_file_whose_columns_do_not_match_the_mapping_is_refused(spark, tmp_path):
    dataset_cfg = write_event_logs(tmp_path / "logs")
    dataset_cfg["files"]["interactions"]["columns"]["item_id"] = "product"
    out = tmp_path / "tables"
    with pytest.raises(DataError, match=r"events.csv, line 1, column 'product': expected a column "
                                        r"'product' \(mapped to interactions 'item_id'\)"):
        build_tables(spark, {"dataset": dataset_cfg, "split": SPLIT}, out, tmp_path, tmp_path)
    assert not out.exists() and list(tmp_path.glob(".tables*")) == []  # nothing half-written


def test_a_bad_value_is_refused_naming_its_line(spark, tmp_path):
    dataset_cfg = write_event_logs(tmp_path / "logs")
    events = tmp_path / "logs" / "events.csv"
    lines = events.read_text().splitlines()
    lines[5] = lines[5].replace("VIEW", "LOOK", 1).replace("CLICK", "LOOK", 1).replace(
        "PURCHASE", "LOOK", 1).replace("CART", "LOOK", 1).replace("SHARE", "LOOK", 1).replace(
        "JOIN", "LOOK", 1)
    events.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"events.csv, line 6, column 'event': expected an event "
                                        r"kind .* got 'LOOK'"):
        build_tables(spark, {"dataset": dataset_cfg, "split": SPLIT}, tmp_path / "out",
                     tmp_path, tmp_path)


def test_a_split_spark_cannot_reproduce_is_refused(spark, tmp_path):
    dataset_cfg = write_event_logs(tmp_path / "logs")
    with pytest.raises(ValueError, match="cuts 'temporal' splits; 'random_ratio' is not written"):
        build_tables(spark, {"dataset": dataset_cfg, "split": {"method": "random_ratio"}},
                     tmp_path / "out", tmp_path, tmp_path)
