"""Tie strength of social edges, from training-period events only.

A social edge says two users know each other; how *strongly* is read from what they did together
before the cut: shares between them (either direction, recent ones counting more), shares one of
them acted on (joins), friends they have in common, and items both of them interacted with.
Each signal is one component (a user×user CSR matrix), and :func:`combine` folds them into the
single documented weight that the GNN's social edges and the bundle's ``social`` matrix carry::

    weight(u, v) = source_weight(u, v) * (1 + log1p(recent_shares) + log1p(joins)
                                            + log1p(adamic_adar) + log1p(co_interactions))

(symmetric, on the social edges only: a pair that shared without being friends gets no edge here).
The components stay available (:class:`TieComponents`) for the share-partner ranker, which
learns its own combination of them (models/share_ranker.py).

Common neighbours are weighted after Adamic & Adar, "Friends and neighbors on the Web", Social
Networks 25(3), 2003; tie strength from interaction counts follows Gilbert & Karahalios,
"Predicting tie strength with social media", CHI 2009.

Split discipline: only the training share records and the training interactions are passed in;
a share record dated after ``cut`` is refused, so test (or valid) records cannot slip in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialrec.features.graph import GraphData
from socialrec.features.sparse import binary


@dataclass
class TieComponents:
    """The signals behind a tie, users × users, every entry from training-period events.

    ``shares`` and ``joins`` are directed (row = sharer, column = recipient: the recipient joined
    / acted on the row's shares); ``recent_shares`` is symmetric (both directions summed) and
    decayed by age; ``adamic_adar`` and ``co_interactions`` are symmetric and stored on the social
    edges only (all pairs would be dense).
    """

    shares: sp.csr_matrix  # number of share records sharer -> recipient
    joins: sp.csr_matrix  # of which the recipient joined
    recent_shares: sp.csr_matrix  # Σ 2^(-age / half_life) over shares either way
    adamic_adar: sp.csr_matrix  # Σ over common friends w of 1 / log(deg w)
    co_interactions: sp.csr_matrix  # number of items both users interacted with in train


def pair_values(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``m[rows[j], cols[j]]`` for every j as a dense float64 array (0 where nothing is stored).

    scipy samples the pairs row by row, so the cost grows with the pairs asked for, not with the
    matrix (this runs per request in serving).
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    # scipy sums duplicate entries when sampling, as sum_duplicates would
    return np.asarray(m.tocsr()[rows, cols], dtype=np.float64).ravel()


def pairwise_overlap(a: sp.csr_matrix, b: sp.csr_matrix, rows: np.ndarray,
                     cols: np.ndarray) -> np.ndarray:
    """``a[rows[j]] · b[cols[j]]`` for every j (row-wise dot products of two sparse matrices)."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    prod = sp.csr_matrix(a)[rows].multiply(sp.csr_matrix(b)[cols])
    return np.asarray(prod.sum(axis=1), dtype=np.float64).ravel()


def adamic_adar_weights(social: sp.csr_matrix) -> sp.csr_matrix:
    """The binary friendship matrix with column ``w`` scaled by ``1 / log(deg w)``, so that
    ``A[u] · W[v]`` is the Adamic–Adar score of (u, v). Friends with a single friend (log 1 = 0)
    cannot be common neighbours of two users anyway; they get weight 0. Direction is ignored."""
    adj = binary(social + social.T)
    deg = np.diff(adj.indptr).astype(np.float64)
    with np.errstate(divide="ignore"):
        inv_log = np.where(deg > 1, 1.0 / np.log(np.maximum(deg, 2.0)), 0.0)
    return (adj @ sp.diags(inv_log)).tocsr()


def share_matrices(shares: pd.DataFrame, n_users: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Directed (sharer → recipient) counts of share records and of joined ones, users × users.

    ``shares`` has the internal-id columns of :class:`GraphData` (sharer, item, recipient, ts,
    joined); records with an unknown id (-1) are left out.
    """
    ok = (shares["sharer"] >= 0) & (shares["recipient"] >= 0) & (shares["item"] >= 0)
    rows = shares.loc[ok, "sharer"].to_numpy(dtype=np.int64)
    cols = shares.loc[ok, "recipient"].to_numpy(dtype=np.int64)
    joined = shares.loc[ok, "joined"].to_numpy(dtype=np.float32)
    shape = (n_users, n_users)
    counts = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    joins = sp.csr_matrix((joined, (rows, cols)), shape=shape)
    counts.sum_duplicates()
    joins.sum_duplicates()
    joins.eliminate_zeros()
    return counts, joins


def _check_cut(shares: pd.DataFrame, cut: int | None) -> None:
    if cut is None or shares.empty:
        return
    ts = shares["ts"].dropna()
    late = ts[ts.astype("int64") > cut]
    if len(late):
        raise ValueError(
            f"tie strength takes training-period shares only: {len(late)} share record(s) are "
            f"dated after the cut {cut} (first: row {late.index[0]}, ts {int(late.iloc[0])}); "
            f"pass GraphData.shares_train, never valid/test shares"
        )


def recency_weights(ts: pd.Series, cut: int | None, half_life: float | None) -> np.ndarray:
    """``2 ** (-(cut - ts) / half_life)`` per record; records without a timestamp weigh 1.

    ``cut`` defaults to the latest timestamp, ``half_life`` to a quarter of the span between the
    earliest timestamp and ``cut`` (so it scales with whatever unit the source's ``ts`` is in:
    seconds or period numbers). No timestamps at all, or a zero span: every record weighs 1.
    """
    values = ts.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    known = ~np.isnan(values)
    out = np.ones(len(values), dtype=np.float64)
    if not known.any():
        return out
    ref = float(values[known].max()) if cut is None else float(cut)
    if half_life is None:
        half_life = (ref - float(values[known].min())) / 4.0
    if half_life <= 0:
        return out
    age = np.clip(ref - values[known], 0.0, None)
    out[known] = np.exp2(-age / half_life)
    return out


def share_components(
    shares_train: pd.DataFrame,
    n_users: int,
    cut: int | None = None,
    half_life: float | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """``(shares, joins, recent_shares)`` of :class:`TieComponents` from training share records
    (refused when any is dated after ``cut``)."""
    _check_cut(shares_train, cut)
    counts, joins = share_matrices(shares_train, n_users)
    ok = (shares_train["sharer"] >= 0) & (shares_train["recipient"] >= 0) & (
        shares_train["item"] >= 0)
    kept = shares_train[ok]
    w = recency_weights(kept["ts"], cut, half_life)
    rows = kept["sharer"].to_numpy(dtype=np.int64)
    cols = kept["recipient"].to_numpy(dtype=np.int64)
    recent = sp.csr_matrix((np.r_[w, w], (np.r_[rows, cols], np.r_[cols, rows])),
                           shape=(n_users, n_users))
    recent.sum_duplicates()
    return counts, joins, recent


def structural_components(social: sp.csr_matrix, train: sp.csr_matrix
                          ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(adamic_adar, co_interactions)`` of :class:`TieComponents`, on the social edges (both
    directions)."""
    social = sp.csr_matrix(social)
    n = social.shape[0]
    if train.shape[0] != n:
        raise ValueError(f"social is {social.shape}, train has {train.shape[0]} users")
    friends = binary(social + social.T)
    edges = friends.tocoo()
    aa = pairwise_overlap(friends, adamic_adar_weights(social), edges.row, edges.col)
    seen = binary(train)
    co = pairwise_overlap(seen, seen, edges.row, edges.col)

    def on_edges(values: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((values, (edges.row, edges.col)), shape=(n, n))
        m.eliminate_zeros()
        return m

    return on_edges(aa), on_edges(co)


def tie_components(
    social: sp.csr_matrix,
    train: sp.csr_matrix,
    shares_train: pd.DataFrame,
    cut: int | None = None,
    half_life: float | None = None,
) -> TieComponents:
    """Every tie signal from training-period data.

    Args:
        social: users × users training-period social edges (``GraphData.social``).
        train: users × items training interactions (``GraphData.train``; any weights, read as
            binary).
        shares_train: training share records in internal ids (``GraphData.shares_train``).
        cut: the end of the training period (a timestamp, same unit as ``ts``): shares after it
            are refused, and recency is measured back from it (default: the latest share).
        half_life: age at which a share counts half (default: see :func:`recency_weights`).
    """
    aa, co = structural_components(social, train)
    counts, joins, recent = share_components(shares_train, social.shape[0], cut, half_life)
    return TieComponents(shares=counts, joins=joins, recent_shares=recent, adamic_adar=aa,
                         co_interactions=co)


def combine(social: sp.csr_matrix, parts: TieComponents) -> sp.csr_matrix:
    """The one tie weight per social edge (module docstring), float32, same edges as ``social``.

    ``source_weight`` is the weight the source gave the edge (1 when it gave none); joins count
    in both directions.
    """
    social = sp.csr_matrix(social, dtype=np.float64)
    social.sum_duplicates()
    social.eliminate_zeros()
    coo = social.tocoo()
    r, c = coo.row.astype(np.int64), coo.col.astype(np.int64)
    joins_either = pair_values(parts.joins, r, c) + pair_values(parts.joins, c, r)
    weight = coo.data * (
        1.0
        + np.log1p(pair_values(parts.recent_shares, r, c))
        + np.log1p(joins_either)
        + np.log1p(pair_values(parts.adamic_adar, r, c))
        + np.log1p(pair_values(parts.co_interactions, r, c))
    )
    out = sp.csr_matrix((weight.astype(np.float32), (r, c)), shape=social.shape)
    out.sum_duplicates()
    return out


def tie_strength(
    social: sp.csr_matrix,
    train: sp.csr_matrix,
    shares_train: pd.DataFrame,
    cut: int | None = None,
    half_life: float | None = None,
) -> sp.csr_matrix:
    """Tie weight per social edge (:func:`combine` of :func:`tie_components`)."""
    return combine(social, tie_components(social, train, shares_train, cut, half_life))


def graph_tie_strength(data: GraphData, cut: int | None = None,
                       half_life: float | None = None) -> sp.csr_matrix:
    """:func:`tie_strength` of a :class:`GraphData`: its training social edges, interactions and
    share records (never ``shares_valid`` / ``shares_test``)."""
    return tie_strength(data.social, data.train, data.shares_train, cut, half_life)
