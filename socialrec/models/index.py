"""FAISS indexes of a :class:`ModelBundle`: maximum inner product search over its embeddings.

Two indexes per bundle, both over inner product (the score of every model here, see
models/base.py):

* ``user_index`` over user embeddings, queried with an item embedding: precision push
  (item → users);
* ``item_index`` over item embeddings, queried with a user embedding: recommendation
  (user → items).

Up to ``exact_threshold`` vectors the index is exact (``IndexFlatIP``: a brute-force scan, a few
milliseconds at that size). Above it the index is approximate, of the kind ``approximate`` names:

* ``ivfpq`` (the default): an inverted file of ``ivf_lists`` k-means cells whose vectors are
  product-quantised to ``pq_bytes`` bytes (Jégou et al., "Product quantization for nearest
  neighbor search", TPAMI 2011); a search scans the ``ivf_nprobe`` cells nearest the query and
  re-ranks ``refine_factor`` × k candidates with 8-bit scalar-quantised vectors (``IndexRefine``
  over ``IndexScalarQuantizer``), which recovers what the 16-byte codes lose. 91 bytes per
  vector at dim 64, against 256 for the exact index and 528 for HNSW;
* ``hnsw``: a Hierarchical Navigable Small World graph (Malkov & Yashunin, TPAMI 2018) over the
  full vectors.

bench/vectors.py measures both beside exact search (bench/RESULTS.md, "Vectors"), which is
where the default kind and its settings come from.

The recall@100 of an approximate index against exact search, measured on a sample of real
queries (the other side's embeddings) through :func:`search_params` (the parameters serving
uses), is recorded in ``bundle.meta["index"]``, and an index below ``min_recall`` is refused
(:class:`IndexRecallError`): a lossy index is never silent. Row ``i`` of an index is internal id
``i`` (the IdMap order), so no ``IndexIDMap`` is needed.

Serving imports this module (to index a bundle that was saved without indexes, and for the
per-call search parameters): like the bundle it indexes, it never imports torch.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from socialrec.models.bundle import ModelBundle

#: Cut-off of the recall recorded for approximate indexes.
RECALL_AT = 100
#: Training points per IVF cell (FAISS warns below 39).
TRAIN_PER_LIST = 50
#: A search probes enough cells to hold this many times the candidates it asks for (cells are
#: uneven), and at least ``ivf_nprobe``.
PROBE_MARGIN = 2


class IndexConfig(BaseModel):
    """The ``index:`` config section: the settings of :func:`build_indexes`."""

    model_config = ConfigDict(extra="forbid")

    exact_threshold: NonNegativeInt = 200_000  # up to this many vectors: exact search
    approximate: Literal["ivfpq", "hnsw"] = "ivfpq"  # the index kind above the threshold
    min_recall: float = Field(0.95, ge=0.0, le=1.0)  # refuse an approximate index below this
    hnsw_m: PositiveInt = 32  # HNSW graph degree
    hnsw_ef_search: PositiveInt = 128  # HNSW search breadth
    ivf_lists: NonNegativeInt = 0  # IVF cells; 0: 4 * sqrt(n)
    ivf_nprobe: PositiveInt = 64  # IVF cells scanned per search, at least (doubled at build
    #                               until the measured recall reaches min_recall)
    pq_bytes: PositiveInt = 16  # PQ code size per vector (at most: a divisor of the dimension)
    refine_factor: PositiveInt = 4  # candidates re-ranked per result (1: no re-ranking)


class IndexRecallError(ValueError):
    """An approximate index whose measured recall is below ``index.min_recall``."""


def kind(index: faiss.Index) -> str:
    """``flat``, ``hnsw`` or ``ivfpq``: what serving reports as its strategy (``faiss_<kind>``)."""
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexRefine | faiss.IndexIVF):
        return "ivfpq"
    return "flat"


def _ivf(index: faiss.Index) -> faiss.IndexIVFPQ:
    base = faiss.downcast_index(index.base_index) if isinstance(index, faiss.IndexRefine) else index
    assert isinstance(base, faiss.IndexIVFPQ), type(base)
    return base


def search_params(index: faiss.Index, k: int) -> faiss.SearchParameters | None:
    """Per-call search parameters for ``k`` results (None: the index's own settings do).

    Passed to each search rather than set on the index, so concurrent requests never race on
    the index's settings. HNSW returns at most efSearch results, so its beam widens to ``k``;
    an IVF search probes enough cells to hold the candidates it needs (a campaign-sized push
    asks for far more than the default cells hold). The parameter classes come from faiss's
    SWIG module, which mypy cannot see.
    """
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
            efSearch=max(index.hnsw.efSearch, k))
    if kind(index) != "ivfpq":
        return None
    ivf_params = faiss.SearchParametersIVF(nprobe=_probes(index, k))  # type: ignore[call-arg]
    if isinstance(index, faiss.IndexRefine):
        return faiss.IndexRefineSearchParameters(  # type: ignore[call-arg]
            k_factor=index.k_factor, base_index_params=ivf_params)
    return ivf_params


def _probes(index: faiss.Index, k: int) -> int:
    """The cells an IVF search for ``k`` results scans: ``nprobe``, or more where those cannot
    hold the candidates it re-ranks."""
    ivf = _ivf(index)
    factor = index.k_factor if isinstance(index, faiss.IndexRefine) else 1
    per_list = max(1.0, ivf.ntotal / ivf.nlist)
    return int(min(ivf.nlist, max(ivf.nprobe, math.ceil(PROBE_MARGIN * factor * k / per_list))))


def _ivfpq(x: np.ndarray, config: IndexConfig, seed: int) -> faiss.Index:
    n, dim = x.shape
    lists = config.ivf_lists or max(1, round(4 * math.sqrt(n)))
    lists = min(lists, n)
    pq_bytes = max(m for m in range(1, min(config.pq_bytes, dim) + 1) if dim % m == 0)
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFPQ(quantizer, dim, lists, pq_bytes, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.nprobe = min(config.ivf_nprobe, lists)
    index: faiss.Index = ivf
    if config.refine_factor > 1:
        refine = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit,
                                            faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexRefine(ivf, refine)
        index.k_factor = config.refine_factor
    # k-means and PQ need a few dozen points per centroid; more only costs training time
    rows = np.random.default_rng(seed).choice(n, size=min(n, TRAIN_PER_LIST * max(lists, 256)),
                                              replace=False)
    index.train(x[np.sort(rows)])
    return index


def build_index(vectors: np.ndarray, config: IndexConfig | None = None,
                seed: int = 0) -> faiss.Index:
    """An inner-product index over ``vectors`` (rows are ids 0..n-1): exact up to the threshold,
    else ``config.approximate`` (recall not checked here: :func:`build_indexes` does)."""
    config = config or IndexConfig()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n <= config.exact_threshold:
        index: faiss.Index = faiss.IndexFlatIP(dim)
    elif config.approximate == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = config.hnsw_ef_search  # saved with the index by faiss.write_index
    else:
        index = _ivfpq(x, config, seed)
    index.add(x)
    return index


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top-``k`` rows of ``vectors`` by inner product, per query (no copy of
    ``vectors`` is made: at 10M users that would be 2.5 GB)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    _, ids = faiss.knn(q, x, min(k, len(x)), metric=faiss.METRIC_INNER_PRODUCT)
    return ids


def recall_at(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray,
              k: int = RECALL_AT, truth: np.ndarray | None = None) -> float:
    """Share of the exact top-``k`` (by inner product over ``vectors``; or ``truth``, its ids)
    that ``index`` returns, searched with the parameters serving uses."""
    k = min(k, len(vectors))
    if truth is None:
        truth = exact_topk(vectors, queries, k)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    _, found = index.search(q, k, params=search_params(index, k))
    hits = sum(len(np.intersect1d(t, f[f >= 0])) for t, f in zip(truth, found, strict=True))
    return hits / truth.size


def _recall_rows(queries: np.ndarray, sample: int, seed: int) -> np.ndarray:
    """The queries an index's recall is measured on (the same for tuning and for the record)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(queries), size=min(sample, len(queries)), replace=False))


def raise_nprobe(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray,
                 min_recall: float, sample: int, seed: int,
                 truth: np.ndarray | None = None) -> None:
    """Double an IVF index's ``nprobe`` (saved with it) while its recall@100 on the sample is
    below ``min_recall``: the cells grow with ``4 sqrt(n)``, so a fixed ``ivf_nprobe`` scans a
    shrinking share of them (bench/vectors.py, 10M users: recall 0.64 at 64 of 12,649 cells).

    It stops at an eighth of the cells, where a search costs a sizeable part of exact search's,
    or once a doubling gains under 0.002: then the codes (``pq_bytes``, ``refine_factor``), not
    the cells scanned, limit recall (10M users, 16-byte codes re-ranked x4: 0.934 with every
    cell scanned), and :func:`build_indexes` refuses the index saying so. Other indexes are
    left as they are. ``truth``: the sample's exact top-100, when the caller has it already."""
    if kind(index) != "ivfpq":
        return
    ivf = _ivf(index)
    q = queries[_recall_rows(queries, sample, seed)]
    if truth is None:
        truth = exact_topk(vectors, q, RECALL_AT)
    ivf.nprobe = _probes(index, RECALL_AT)  # what a k=100 search scans anyway
    limit = max(ivf.nprobe, ivf.nlist // 8)
    recall = recall_at(index, vectors, q, truth=truth)
    while recall < min_recall and ivf.nprobe < limit:
        ivf.nprobe = min(limit, 2 * ivf.nprobe)
        before, recall = recall, recall_at(index, vectors, q, truth=truth)
        if recall - before < 0.002:
            break


def describe(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray,
             sample: int, seed: int, truth: np.ndarray | None = None) -> dict[str, Any]:
    """What ``bundle.meta["index"]`` records for one index (recall measured when approximate;
    ``truth`` as for :func:`raise_nprobe`)."""
    info: dict[str, Any] = {"type": type(index).__name__, "n": int(index.ntotal),
                            "dim": int(index.d), "metric": "inner_product"}
    if isinstance(index, faiss.IndexHNSWFlat):
        # nb_neighbors is a SWIG method that faiss's type stubs do not list
        degree = int(index.hnsw.nb_neighbors(1))  # type: ignore[attr-defined]
        info.update(hnsw_m=degree, ef_search=int(index.hnsw.efSearch))
    elif kind(index) == "ivfpq":
        ivf = _ivf(index)
        info.update(ivf_lists=int(ivf.nlist), ivf_nprobe=int(ivf.nprobe), pq_bytes=int(ivf.pq.M),
                    refine_factor=int(index.k_factor) if isinstance(index, faiss.IndexRefine)
                    else 1)
    if kind(index) != "flat":
        rows = _recall_rows(queries, sample, seed)
        info.update(recall_queries=len(rows),
                    **{f"recall_at_{RECALL_AT}": recall_at(index, vectors, queries[rows],
                                                           truth=truth)})
    return info


def build_indexes(bundle: ModelBundle, config: IndexConfig | None = None,
                  recall_sample: int = 200, seed: int = 0) -> None:
    """Set ``bundle.user_index`` / ``bundle.item_index`` and record them in ``meta["index"]``.

    The recall of an approximate index is measured with ``recall_sample`` queries drawn
    (``seed``) from the embeddings that query it in serving: item embeddings for the user index,
    user embeddings for the item index. Raises :class:`IndexRecallError` (and leaves the bundle
    as it was) when either falls below ``config.min_recall``.
    """
    config = config or IndexConfig()
    user_index = build_index(bundle.user_emb, config, seed)
    item_index = build_index(bundle.item_emb, config, seed)
    info: dict[str, Any] = {"exact_threshold": config.exact_threshold,
                            "min_recall": config.min_recall}
    for side, index, vectors, queries in (("user", user_index, bundle.user_emb, bundle.item_emb),
                                          ("item", item_index, bundle.item_emb, bundle.user_emb)):
        # the sample's exact answers, computed once for tuning and for the record (at 10M
        # vectors an exact top-100 of 200 queries takes seconds)
        truth = (None if kind(index) == "flat" else
                 exact_topk(vectors, queries[_recall_rows(queries, recall_sample, seed)],
                            RECALL_AT))
        raise_nprobe(index, vectors, queries, config.min_recall, recall_sample, seed, truth)
        info[side] = describe(index, vectors, queries, recall_sample, seed, truth)
    key = f"recall_at_{RECALL_AT}"
    for side in ("user", "item"):
        found = info[side]
        if key in found and found[key] < config.min_recall:
            knob = ("index.ivf_nprobe / index.refine_factor / index.pq_bytes"
                    if kind(user_index if side == "user" else item_index) == "ivfpq"
                    else "index.hnsw_ef_search / index.hnsw_m")
            raise IndexRecallError(
                f"the {side} index ({found['type']}, {found['n']:,} vectors) finds "
                f"{found[key]:.3f} of the exact top {RECALL_AT} ({found['recall_queries']} "
                f"queries), below index.min_recall={config.min_recall}: raise {knob}, or "
                f"index.exact_threshold above {found['n']:,} for exact search")
    bundle.user_index, bundle.item_index = user_index, item_index
    bundle.meta["index"] = info
