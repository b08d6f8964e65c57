"""Encode a split into the sparse matrices models train on (the user–item–friend graph).

Only ``split.train`` interactions, ``split.social`` edges and ``split.train_shares`` reach the
training matrices; valid/test interactions are encoded separately as evaluation targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, NonNegativeFloat

from socialrec.features.idmap import IdMap
from socialrec.features.sparse import binary
from socialrec.features.splits import Split
from socialrec.features.tables import Dataset
from socialrec.features.tables import empty as empty_table


class EventWeights(BaseModel):
    """Edge weight of each event kind (features/tables.py ``EVENT_TYPES``) in the user-item graph;
    a key that is not an event kind is refused."""

    model_config = ConfigDict(extra="forbid")

    view: NonNegativeFloat = 0.5
    click: NonNegativeFloat = 1.0
    cart: NonNegativeFloat = 2.0
    purchase: NonNegativeFloat = 4.0
    rate: NonNegativeFloat = 1.0
    share: NonNegativeFloat = 3.0
    join: NonNegativeFloat = 4.0
    push_open: NonNegativeFloat = 1.0


class GraphConfig(BaseModel):
    """The ``graph:`` config section (configs/defaults.yaml)."""

    model_config = ConfigDict(extra="forbid")

    event_weights: EventWeights = EventWeights()


#: Default edge weight per event kind (configs/defaults.yaml `graph.event_weights` overrides).
DEFAULT_EVENT_WEIGHTS: dict[str, float] = EventWeights().model_dump()


@dataclass
class GraphData:
    """Everything a model needs to fit, in internal ids.

    ``train`` is the weighted user×item matrix of training events (duplicates summed); ``valid`` and
    ``test`` are binary user×item targets; ``social`` is the user×user matrix of tie weights
    built from training-period social edges only (symmetrised when the source is symmetric);
    ``purchases`` holds
    training purchases (the "already bought" rule); ``shares_*`` are share records in internal ids
    (columns sharer, item, recipient, ts, joined).
    """

    users: IdMap
    items: IdMap
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    social: sp.csr_matrix
    purchases: sp.csr_matrix
    shares_train: pd.DataFrame
    shares_valid: pd.DataFrame
    shares_test: pd.DataFrame
    item_category: np.ndarray  # int code per item, -1 unknown
    categories: list[str]
    push_opt_in: np.ndarray  # bool per user

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


def build_id_maps(dataset: Dataset) -> tuple[IdMap, IdMap]:
    """Users and items of every table (all periods: an id is not an interaction, so no leak)."""
    users, items = IdMap(), IdMap()
    users.add(pd.unique(dataset.interactions["user_id"]))
    items.add(pd.unique(dataset.interactions["item_id"]))
    for col in ("src", "dst"):
        users.add(pd.unique(dataset.social[col]))
    for col in ("sharer_id", "recipient_id"):
        users.add(pd.unique(dataset.shares[col]))
    items.add(pd.unique(dataset.shares["item_id"]))
    if dataset.users is not None:
        users.add(pd.unique(dataset.users["user_id"]))
    if dataset.items is not None:
        items.add(pd.unique(dataset.items["item_id"]))
    return users, items


def _matrix(
    df: pd.DataFrame, users: IdMap, items: IdMap, weights: np.ndarray | None
) -> sp.csr_matrix:
    rows = users.to_index_series(df["user_id"])
    cols = items.to_index_series(df["item_id"])
    data = np.ones(len(df), dtype=np.float32) if weights is None else weights.astype(np.float32)
    m = sp.csr_matrix((data, (rows, cols)), shape=(len(users), len(items)), dtype=np.float32)
    m.sum_duplicates()
    return m


def social_matrix(social: pd.DataFrame, users: IdMap, symmetric: bool) -> sp.csr_matrix:
    """User×user tie weights from social edges; self-loops dropped, duplicates averaged."""
    src = users.to_index_series(social["src"])
    dst = users.to_index_series(social["dst"])
    w = social["weight"].fillna(1.0).to_numpy(dtype=np.float32)
    keep = src != dst
    src, dst, w = src[keep], dst[keep], w[keep]
    if symmetric:
        src, dst, w = np.concatenate([src, dst]), np.concatenate([dst, src]), np.concatenate([w, w])
    n = len(users)
    m = sp.coo_matrix((w, (src, dst)), shape=(n, n)).tocsr()
    # Duplicate edges (both directions listed, repeated rows) must not add up into a stronger tie.
    m.sum_duplicates()
    counts = sp.coo_matrix((np.ones_like(w), (src, dst)), shape=(n, n)).tocsr()
    counts.sum_duplicates()
    m.data /= counts.data
    return m.astype(np.float32)


def encode_shares(shares: pd.DataFrame, users: IdMap, items: IdMap) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sharer": users.to_index_series(shares["sharer_id"]),
            "item": items.to_index_series(shares["item_id"]),
            "recipient": users.to_index_series(shares["recipient_id"]),
            "ts": shares["ts"].astype("Int64"),
            "joined": shares["joined"].astype(bool),
        }
    )


def build_graph(
    dataset: Dataset,
    split: Split,
    event_weights: dict[str, float] | None = None,
    id_maps: tuple[IdMap, IdMap] | None = None,
) -> GraphData:
    """Encode ``split`` of ``dataset``; ``id_maps`` of a previous model keep ids stable."""
    weights = {**DEFAULT_EVENT_WEIGHTS, **(event_weights or {})}
    if id_maps is None:
        users, items = build_id_maps(dataset)
    else:
        users, items = id_maps
        fresh_users, fresh_items = build_id_maps(dataset)
        users.add(fresh_users.ids)
        items.add(fresh_items.ids)
    train_w = split.train["event"].map(weights).fillna(1.0).to_numpy(dtype=np.float32)
    purchases = split.train[split.train["event"] == "purchase"]

    categories: list[str] = []
    item_category = np.full(len(items), -1, dtype=np.int64)
    if dataset.items is not None and "category" in dataset.items:
        known = dataset.items.dropna(subset=["category"])
        codes, names = pd.factorize(known["category"].astype(str))
        item_category[items.to_index_series(known["item_id"])] = codes
        categories = [str(name) for name in names]
    opt_in = np.ones(len(users), dtype=bool)
    if dataset.users is not None and "push_opt_in" in dataset.users:
        idx = users.to_index_series(dataset.users["user_id"])
        opt_in[idx] = dataset.users["push_opt_in"].fillna(True).to_numpy(dtype=bool)

    return GraphData(
        users=users,
        items=items,
        train=_matrix(split.train, users, items, train_w),
        valid=binary(_matrix(split.valid, users, items, None)),
        test=binary(_matrix(split.test, users, items, None)),
        social=social_matrix(split.social, users, dataset.social_symmetric),
        purchases=binary(_matrix(purchases, users, items, None)),
        shares_train=encode_shares(split.train_shares, users, items),
        shares_valid=encode_shares(split.valid_shares, users, items),
        shares_test=encode_shares(split.test_shares, users, items),
        item_category=item_category,
        categories=categories,
        push_opt_in=opt_in,
    )


def graph_from_parquet(folder: str | Path, event_weights: dict[str, float] | None = None,
                       train_share: float = 0.8) -> GraphData:
    """The training graph of a world too large for pandas: Parquet parts of the canonical
    interactions and social tables (``folder/interactions/``, ``folder/social/``, plus
    ``folder/users/`` and ``folder/items.parquet`` naming every id in index order; as
    features/synthetic.py ``write_world`` writes them), read part by part with Arrow.

    Train is every event before the ``train_share`` quantile of event times (a global time cut,
    computed from the per-second histogram; unlike features/splits.py a pair is not kept whole),
    weighted by ``event_weights``; ``social`` holds every listed friendship. Valid / test targets
    and share records are left empty: this is the graph a scale run trains on, not an
    evaluation."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    folder = Path(folder)
    weights = {**DEFAULT_EVENT_WEIGHTS, **(event_weights or {})}
    users = IdMap(ds.dataset(folder / "users", format="parquet").to_table(
        columns=["user_id"]).column("user_id"))
    items = IdMap(ds.dataset(folder / "items.parquet", format="parquet").to_table(
        columns=["item_id"]).column("item_id"))
    inter = ds.dataset(folder / "interactions", format="parquet")
    bounds = [pc.min_max(batch.column("ts")) for batch in inter.to_batches(columns=["ts"])]
    if not bounds:
        raise ValueError(f"{folder / 'interactions'}: no events to train on")
    lo = int(min(b["min"].as_py() for b in bounds))
    hi = int(max(b["max"].as_py() for b in bounds))
    counts = np.zeros(int(hi - lo) + 1, dtype=np.int64)
    for batch in inter.to_batches(columns=["ts"]):
        counts += np.bincount(batch.column("ts").to_numpy() - lo, minlength=len(counts))
    cum = np.cumsum(counts)
    cut = lo + int(np.searchsorted(cum, int(train_share * cum[-1]) + 1))
    kinds = pa.array(list(weights))
    kind_weight = np.asarray(list(weights.values()), dtype=np.float32)
    rows, cols, data = [], [], []
    for batch in inter.to_batches(columns=["user_id", "item_id", "event", "ts"]):
        keep = pc.less(batch.column("ts"), cut)
        part = batch.filter(keep)
        rows.append(users.to_index(part.column("user_id")).astype(np.int32))
        cols.append(items.to_index(part.column("item_id")).astype(np.int32))
        kind = pc.index_in(part.column("event"), value_set=kinds).to_numpy(zero_copy_only=False)
        data.append(np.where(np.isnan(kind), 1.0, kind_weight[np.nan_to_num(kind).astype(int)])
                    .astype(np.float32))
    shape = (len(users), len(items))
    train = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                          shape=shape, dtype=np.float32)
    del rows, cols, data
    train.sum_duplicates()
    src, dst = [], []
    for batch in ds.dataset(folder / "social", format="parquet").to_batches(
            columns=["src", "dst"]):
        src.append(users.to_index(batch.column("src")).astype(np.int32))
        dst.append(users.to_index(batch.column("dst")).astype(np.int32))
    n = len(users)
    s_src, s_dst = np.concatenate(src), np.concatenate(dst)
    social = sp.csr_matrix((np.ones(len(s_src), dtype=np.float32), (s_src, s_dst)),
                           shape=(n, n))
    social.sum_duplicates()
    social.data[:] = 1.0
    empty = sp.csr_matrix((np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int32),
                           np.zeros(shape[0] + 1, dtype=np.int32)), shape=shape)
    no_shares = encode_shares(empty_table("shares"), users, items)
    return GraphData(users=users, items=items, train=train, valid=empty, test=empty.copy(),
                     social=social, purchases=empty.copy(), shares_train=no_shares,
                     shares_valid=no_shares.copy(), shares_test=no_shares.copy(),
                     item_category=np.full(len(items), -1, dtype=np.int64), categories=[],
                     push_opt_in=np.ones(n, dtype=bool))
