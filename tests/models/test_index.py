"""FAISS index building: exact below the threshold, HNSW above with its recall recorded."""

from __future__ import annotations

import faiss
import numpy as np

from socialrec.models.bundle import ModelBundle
from socialrec.models.index import build_indexes, recall_at
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
    build_indexes(b, exact_threshold=1000, hnsw_m=16, ef_search=64)
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
