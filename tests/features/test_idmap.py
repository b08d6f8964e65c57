"""IdMap's contract: dense ints in order of first appearance, append-only (a retrain keeps every
index), lookups with or without a value for unknown ids, saved without pickle; bulk operations
take pandas / numpy / Arrow columns without a Python loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from socialrec.features.idmap import DICT_LOOKUP_MAX, IdMap


def test_ids_are_numbered_in_order_of_first_appearance_and_never_renumbered():
    m = IdMap(["b", "a", "b"])
    assert m.ids == ["b", "a"] and len(m) == 2
    assert m.add(["c", "a", "d", "c"]).tolist() == [2, 1, 3, 2]
    assert m.ids == ["b", "a", "c", "d"]
    assert m.to_index(["d", "b"]).tolist() == [3, 0]
    assert m.to_ids([3, 0, -1]) == ["d", "b", "d"]


def test_lookups_of_unknown_ids():
    m = IdMap(["x", "y"])
    with pytest.raises(KeyError, match="'nope'"):
        m.to_index(["x", "nope"])
    assert m.to_index(["x", "nope"], missing=-1).tolist() == [0, -1]
    assert m.to_index_series(pd.Series(["y", "z"], dtype="string")).tolist() == [1, -1]
    assert m.get("y") == 1 and m.get("z") is None
    assert "x" in m and "z" not in m
    m.add(["z"])  # single-key lookups see ids added after their first use
    assert m.get("z") == 2 and "z" in m


def test_every_kind_of_column_gives_the_same_indexes():
    values = ["u3", "u1", "u3", "u2"]
    expected = IdMap(values).add(values).tolist()
    for column in (pd.Series(values, dtype="string"), pd.Series(values, dtype=object),
                   np.array(values), pa.array(values), pa.chunked_array([values[:2], values[2:]]),
                   iter(values)):
        assert IdMap(values).add(column).tolist() == expected
    assert IdMap(pd.unique(pd.Series(values, dtype="string"))).ids == ["u3", "u1", "u2"]
    assert IdMap(np.array([10, 20])).ids == ["10", "20"]  # ids are strings


def test_saved_as_fixed_width_unicode_without_pickle(tmp_path):
    m = IdMap(["ä", "long-id-42", "b"])
    m.save(tmp_path / "ids.npy")
    raw = np.load(tmp_path / "ids.npy", allow_pickle=False)
    assert raw.dtype.kind == "U" and raw.tolist() == m.ids
    assert IdMap.load(tmp_path / "ids.npy").ids == m.ids
    IdMap().save(tmp_path / "empty.npy")
    assert len(IdMap.load(tmp_path / "empty.npy")) == 0


def test_a_missing_id_is_refused():
    with pytest.raises(ValueError, match="an id is missing"):
        IdMap(pd.Series(["a", None], dtype="string"))


def test_a_million_ids_without_a_python_loop():
    ids = pa.array(np.char.add("u", np.arange(1_000_000).astype(str)))
    m = IdMap(ids)
    queries = ids.take(pa.array(np.arange(999_999, -1, -1)))
    assert (m.to_index(queries) == np.arange(999_999, -1, -1)).all()


def test_a_few_ids_and_many_get_the_same_indexes():
    """Up to DICT_LOOKUP_MAX ids go through the dict, more through one Arrow encoding: the same
    answers, unknown ids included, whichever path a list takes."""
    m = IdMap(f"u{i}" for i in range(500))
    asked = [f"u{i}" for i in range(0, 1000, 7)]  # half unknown
    many = m.to_index(asked, missing=-1)
    few = np.concatenate([m.to_index(asked[i:i + 10], missing=-1)
                          for i in range(0, len(asked), 10)])
    assert len(asked) > DICT_LOOKUP_MAX >= 10
    assert np.array_equal(many, few)
    assert np.array_equal(many, [int(u[1:]) if int(u[1:]) < 500 else -1 for u in asked])
    with pytest.raises(KeyError, match="u700"):
        m.to_index(["u1", "u700"])
    m.add(["u700"])
    assert m.to_index(["u700"]).tolist() == [500]
    with pytest.raises(ValueError, match="position 1"):
        m.to_index(pa.array(["u1", None]))
