"""FAISS index building: exact below the threshold, IVF-PQ or HNSW above with its recall recorded,
refused below the configured floor."""

from __future__ import annotations

import math

import faiss
import numpy as np
import pytest

from socialrec.models.bundle import ModelBundle
from socialrec.models.index import (
    IndexConfig,
    IndexRecallError,
    build_index,
    build_indexes,
    raise_nprobe,
    recall_at,
)
from tests.support.bundles import random_bundle


def test_exact_indexes_below_the_threshold(tmp_path):
    b = random_bundle(n_users=300, n_items=60, dim=8, seed=1)
    assert isinstance(b.user_index, faiss.IndexFlatIP)
    assert b.meta["index"]["user"] == {"type": "IndexFlatIP", "n": 300, "dim": 8,
                                       "metric": "inner_product"}
    _, ids = b.user_index.search(b.item_emb[:3], 10)
    want = np.argsort(-(b.item_emb[:3] @ b.user_emb.T), axis=1)[:, :10]
    assert np.array_equal(ids, want)
    loaded = ModelBundle.load(b.save(tmp_path / "b"))
    assert isinstance(loaded.item_index, faiss.IndexFlatIP)
    assert loaded.meta["index"] == b.meta["index"]


def test_hnsw_above_the_threshold_records_recall(tmp_path):
    b = random_bundle(n_users=3000, n_items=200, dim=16, seed=2)
    build_indexes(b, IndexConfig(exact_threshold=1000, approximate="hnsw", hnsw_m=16,
                                 hnsw_ef_search=64, min_recall=0.9))
    info = b.meta["index"]
    assert info["user"]["type"] == "IndexHNSWFlat" and info["item"]["type"] == "IndexFlatIP"
    assert info["user"]["metric"] == "inner_product"
    assert info["user"]["ef_search"] == 64 and info["user"]["hnsw_m"] == 16
    assert 0.9 <= info["user"]["recall_at_100"] <= 1.0
    assert b.user_index.metric_type == faiss.METRIC_INNER_PRODUCT
    # the recorded figure is what a fresh measurement gives
    assert recall_at(b.user_index, b.user_emb, b.item_emb) >= 0.9
    loaded = ModelBundle.load(b.save(tmp_path / "b"))
    assert loaded.user_index.hnsw.efSearch == 64


@pytest.fixture(scope="module")
def ivfpq_bundle():
    """4000 users above a threshold of 1000: an IVF-PQ user index (8-byte codes, 16 of 253 cells
    scanned, 8 candidates re-ranked per result); 200 items: an exact item index."""
    b = random_bundle(n_users=4000, n_items=200, dim=16, seed=5, shares=False)
    build_indexes(b, IndexConfig(exact_threshold=1000, pq_bytes=8, ivf_nprobe=16,
                                 refine_factor=8))
    return b


def test_ivfpq_above_the_threshold_records_recall_and_survives_a_save(ivfpq_bundle, tmp_path):
    b = ivfpq_bundle
    info = b.meta["index"]
    assert info["min_recall"] == 0.95
    user = info["user"]
    assert user["type"] == "IndexRefine" and info["item"]["type"] == "IndexFlatIP"
    assert (user["ivf_lists"], user["pq_bytes"], user["refine_factor"]) == (
        round(4 * 4000 ** 0.5), 8, 8)
    # at least ivf_nprobe: the cells a k=100 search re-ranking 8 x 100 candidates scans anyway
    assert user["ivf_nprobe"] == math.ceil(2 * 8 * 100 / (4000 / user["ivf_lists"]))
    assert user["recall_queries"] == 200 and 0.95 <= user["recall_at_100"] <= 1.0
    assert recall_at(b.user_index, b.user_emb, b.item_emb) >= 0.95
    loaded = ModelBundle.load(b.save(tmp_path / "b"))
    assert type(loaded.user_index).__name__ == "IndexRefine"
    assert recall_at(loaded.user_index, b.user_emb, b.item_emb[:50]) == recall_at(
        b.user_index, b.user_emb, b.item_emb[:50])


def test_an_index_below_the_recall_floor_is_refused():
    b = random_bundle(n_users=4000, n_items=200, dim=16, seed=5, shares=False)
    before = (b.user_index, dict(b.meta["index"]))
    # one cell of 253 scanned, 2-byte codes, no re-ranking: far from the exact top 100
    poor = IndexConfig(exact_threshold=1000, pq_bytes=2, ivf_nprobe=1, refine_factor=1)
    with pytest.raises(IndexRecallError, match=r"user index .* below index.min_recall=0\.95: "
                                               r"raise index.ivf_nprobe"):
        build_indexes(b, poor)
    assert (b.user_index, b.meta["index"]) == before  # the bundle keeps what it had
    build_indexes(b, poor.model_copy(update={"min_recall": 0.0}))  # a floor of 0 accepts it
    assert b.meta["index"]["user"]["recall_at_100"] < 0.95


def _clustered(n: int, rng: np.random.Generator, centres: np.ndarray,
               noise: float = 0.3) -> np.ndarray:
    x = centres[rng.integers(len(centres), size=n)] + noise * rng.normal(size=(n, 16))
    return x.astype(np.float32)


def test_too_few_cells_scanned_are_raised_until_the_recall_floor_is_met():
    """ivf_nprobe is a lower bound: from the 11 of 256 cells (~80 users each) a k=100 search
    scans anyway, nprobe doubles, saved with the index, until the measured recall reaches
    min_recall; one doubling fewer is below. Clustered vectors, as learned embeddings are:
    isotropic ones have no cells worth finding."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(200, 16))
    users, queries = _clustered(20000, rng, centres, 0.6), _clustered(400, rng, centres, 0.6)
    index = build_index(users, IndexConfig(exact_threshold=0, ivf_lists=256, ivf_nprobe=1))
    raise_nprobe(index, users, queries[:200], 0.95, 200, seed=0)
    ivf = faiss.downcast_index(index.base_index)
    nprobe = ivf.nprobe
    assert 11 < nprobe <= 256 // 8
    held_out = queries[200:]  # not the queries nprobe was chosen on
    assert recall_at(index, users, held_out) >= 0.94
    ivf.nprobe = nprobe // 2
    assert recall_at(index, users, queries[:200]) < 0.95


def test_raising_stops_where_the_codes_limit_recall():
    """2-byte codes without re-ranking never reach 0.95: nprobe stops at an eighth of the cells
    (or once a doubling gains nothing), and build_indexes then refuses the index."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(200, 16))
    users, queries = _clustered(20000, rng, centres), _clustered(200, rng, centres)
    index = build_index(users, IndexConfig(exact_threshold=0, ivf_lists=256, ivf_nprobe=1,
                                           pq_bytes=2, refine_factor=1))
    raise_nprobe(index, users, queries, 0.95, 200, seed=0)
    assert faiss.extract_index_ivf(index).nprobe <= 256 // 8
    assert recall_at(index, users, queries) < 0.95
