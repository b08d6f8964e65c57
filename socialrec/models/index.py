"""FAISS indexes of a :class:`ModelBundle`: maximum inner product search over its embeddings.

Two indexes per bundle, both over inner product (the score of every model here, see
models/base.py):

* ``user_index`` over user embeddings, queried with an item embedding: precision push
  (item → users);
* ``item_index`` over item embeddings, queried with a user embedding: recommendation
  (user → items).

Up to ``exact_threshold`` vectors the index is exact (``IndexFlatIP``: a brute-force scan, a few
milliseconds at that size). Above it, an HNSW graph (Malkov & Yashunin, "Efficient and robust
approximate nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2018)
with ``METRIC_INNER_PRODUCT``; its recall@100 against exact search, measured on a sample of real
queries (the other side's embeddings), is recorded in ``bundle.meta["index"]`` so a lossy index is
never silent. Row ``i`` of an index is internal id ``i`` (the IdMap order), so no ``IndexIDMap``
is needed.

Serving imports this module (to index a bundle that was saved without indexes): like the bundle
it indexes, it never imports torch.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt

from socialrec.models.bundle import ModelBundle

#: Cut-off of the recall recorded for approximate indexes.
RECALL_AT = 100


class IndexConfig(BaseModel):
    """The ``index:`` config section: the arguments of :func:`build_indexes`."""

    model_config = ConfigDict(extra="forbid")

    exact_threshold: NonNegativeInt = 200_000  # up to this many vectors: exact search
    hnsw_m: PositiveInt = 32  # HNSW graph degree
    hnsw_ef_search: PositiveInt = 128  # HNSW search breadth


def build_index(vectors: np.ndarray, exact_threshold: int = 200_000, hnsw_m: int = 32,
                ef_search: int = 128) -> faiss.Index:
    """An inner-product index over ``vectors`` (rows are ids 0..n-1): exact up to the threshold."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n <= exact_threshold:
        index: faiss.Index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search  # saved with the index by faiss.write_index
    index.add(x)
    return index


def recall_at(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray,
              k: int = RECALL_AT) -> float:
    """Share of the exact top-``k`` (by inner product over ``vectors``) that ``index`` returns."""
    k = min(k, len(vectors))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, truth = exact.search(q, k)
    _, found = index.search(q, k)
    hits = sum(len(np.intersect1d(t, f[f >= 0])) for t, f in zip(truth, found, strict=True))
    return hits / truth.size


def describe(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray,
             sample: int, seed: int) -> dict[str, Any]:
    """What ``bundle.meta["index"]`` records for one index."""
    info: dict[str, Any] = {"type": type(index).__name__, "n": int(index.ntotal),
                            "dim": int(index.d), "metric": "inner_product"}
    if isinstance(index, faiss.IndexHNSWFlat):
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(queries), size=min(sample, len(queries)), replace=False)
        # nb_neighbors is a SWIG method that faiss's type stubs do not list
        degree = int(index.hnsw.nb_neighbors(1))  # type: ignore[attr-defined]
        info.update(hnsw_m=degree, ef_search=int(index.hnsw.efSearch), recall_queries=len(rows),
                    **{f"recall_at_{RECALL_AT}": recall_at(index, vectors, queries[rows])})
    return info


def build_indexes(bundle: ModelBundle, exact_threshold: int = 200_000, hnsw_m: int = 32,
                  ef_search: int = 128, recall_sample: int = 200, seed: int = 0) -> None:
    """Set ``bundle.user_index`` / ``bundle.item_index`` and record them in ``meta["index"]``.

    The recall of an HNSW index is measured with ``recall_sample`` queries drawn (``seed``) from
    the embeddings that query it in serving: item embeddings for the user index, user embeddings
    for the item index.
    """
    bundle.user_index = build_index(bundle.user_emb, exact_threshold, hnsw_m, ef_search)
    bundle.item_index = build_index(bundle.item_emb, exact_threshold, hnsw_m, ef_search)
    bundle.meta["index"] = {
        "exact_threshold": exact_threshold,
        "user": describe(bundle.user_index, bundle.user_emb, bundle.item_emb, recall_sample, seed),
        "item": describe(bundle.item_index, bundle.item_emb, bundle.user_emb, recall_sample, seed),
    }
