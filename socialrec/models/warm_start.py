"""Warm start: the first parameters of a retrain, from its parent version's.

A bundle of a model that can be warm-started carries its layer-0 parameters (``warm_start/`` in
the bundle, :func:`save_state` / :func:`load_state`, plain ``.npy`` files, never pickle). A child
fit on a graph whose ids extend the parent's (features/graph.py ``build_graph(id_maps=...)``:
ids appended, never renumbered) starts from :func:`initial_tables`:

- every user / item the parent knew keeps its row (matched by id, so this holds even if the
  child were numbered differently);
- a new item starts at the mean of the rows of its training users, a new user at the mean of
  its training items' rows (after the new items got theirs), then, for who is still without,
  items from their (new) users, users from their friends, items from the mean of their
  category's known items; what has no neighbour at all keeps its random start. This is one step
  of the propagation the GNN itself does (a node is the mean of its neighbours), on layer 0.
  Each such row is rescaled to the median norm of the known rows of its kind, so a new row
  starts neither smaller nor larger than the others (the BPR loss scores unnormalised
  products);
- learned biases (per item, per user) are copied the same way; a new item gets its category's
  median, a new user the median of the known users.

numpy only: serving never loads this, but tests and the retrain read it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialrec.features.graph import GraphData
from socialrec.features.idmap import IdMap

#: the sub-directory of a bundle holding the layer-0 parameters
DIRECTORY = "warm_start"
USERS, ITEMS, ITEM_BIAS, USER_BIAS = "layer0_users", "layer0_items", "item_bias", "user_bias"


def save_state(bundle_dir: Path, state: dict[str, np.ndarray]) -> None:
    out = Path(bundle_dir) / DIRECTORY
    out.mkdir(parents=True, exist_ok=True)
    for name, array in state.items():
        np.save(out / f"{name}.npy", np.ascontiguousarray(array, dtype=np.float32),
                allow_pickle=False)


def has_state(bundle_dir: str | Path) -> bool:
    return (Path(bundle_dir) / DIRECTORY / f"{USERS}.npy").exists()


@dataclass
class ParentState:
    """A parent version's layer-0 parameters and the ids of their rows."""

    users: IdMap
    items: IdMap
    arrays: dict[str, np.ndarray]

    @property
    def dim(self) -> int:
        return int(self.arrays[USERS].shape[1])


def load_state(bundle_dir: str | Path) -> ParentState:
    """The warm-start parameters of the bundle in ``bundle_dir`` (FileNotFoundError, saying so,
    when the bundle has none: a model that cannot be warm-started, or a bundle saved before)."""
    bundle_dir = Path(bundle_dir)
    if not has_state(bundle_dir):
        raise FileNotFoundError(f"{bundle_dir}: no {DIRECTORY}/{USERS}.npy; the parent's model "
                                "saved no layer-0 parameters (only socialgnn / lightgcn do)")
    arrays = {p.stem: np.load(p, allow_pickle=False)
              for p in sorted((bundle_dir / DIRECTORY).glob("*.npy"))}
    users, items = IdMap.load(bundle_dir / "users.npy"), IdMap.load(bundle_dir / "items.npy")
    if len(users) != len(arrays[USERS]) or len(items) != len(arrays[ITEMS]):
        raise ValueError(f"{bundle_dir}: {len(users)} users / {len(items)} items but "
                         f"{len(arrays[USERS])} / {len(arrays[ITEMS])} parameter rows")
    return ParentState(users, items, arrays)


@dataclass
class StartTables:
    """The child's first layer-0 parameters, and how each row was started."""

    users: np.ndarray
    items: np.ndarray
    item_bias: np.ndarray | None = None
    user_bias: np.ndarray | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _positions(parent: IdMap, child: IdMap) -> tuple[np.ndarray, np.ndarray]:
    """(child rows, parent rows) of the ids both know."""
    child_rows = child.to_index_series(pd.Series(parent.ids, dtype="string"))
    known = child_rows >= 0
    return child_rows[known], np.flatnonzero(known)


def _neighbour_mean(adjacency: sp.csr_matrix, source: np.ndarray, has: np.ndarray,
                    rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``rows`` of ``adjacency`` (rows × sources), the weighted mean of ``source`` over the
    neighbours that have a row (``has``); returns (means, which rows had such a neighbour)."""
    block = sp.csr_matrix(sp.csr_matrix(adjacency[rows]) @ sp.diags(has.astype(np.float32)))
    weight = np.asarray(block.sum(axis=1)).ravel()
    found = weight > 0
    means = np.zeros((len(rows), source.shape[1]), dtype=np.float32)
    if found.any():
        means[found] = (block[found] @ source) / weight[found, None]
    return means, found


def _rescale(rows: np.ndarray, norm: float) -> np.ndarray:
    lengths = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.where(lengths > 0, rows / np.maximum(lengths, 1e-12) * norm, rows)


def initial_tables(parent: ParentState, data: GraphData, users: np.ndarray,
                   items: np.ndarray) -> StartTables:
    """The child's layer-0 tables: ``users`` / ``items`` (its random start, one row per id of
    ``data``) with the parent's rows copied in and new rows started from their neighbours (module
    docstring)."""
    if parent.dim != users.shape[1]:
        raise ValueError(f"warm start: the parent's embeddings have {parent.dim} dimensions, "
                         f"this model {users.shape[1]} (embedding_dim changed: train cold)")
    users, items = users.astype(np.float32).copy(), items.astype(np.float32).copy()
    child_u, parent_u = _positions(parent.users, data.users)
    child_i, parent_i = _positions(parent.items, data.items)
    users[child_u] = parent.arrays[USERS][parent_u]
    items[child_i] = parent.arrays[ITEMS][parent_i]
    has_user = np.zeros(len(users), dtype=bool)
    has_user[child_u] = True
    has_item = np.zeros(len(items), dtype=bool)
    has_item[child_i] = True
    user_norm = float(np.median(np.linalg.norm(users[has_user], axis=1))) if has_user.any() else 0
    item_norm = float(np.median(np.linalg.norm(items[has_item], axis=1))) if has_item.any() else 0
    counts = {"users_kept": int(has_user.sum()), "items_kept": int(has_item.sum())}

    r = sp.csr_matrix(data.train, dtype=np.float32)
    rt = r.T.tocsr()

    def start(kind: str, how: str, adjacency: sp.csr_matrix, source: np.ndarray,
              source_has: np.ndarray) -> None:
        table, has, norm = (items, has_item, item_norm) if kind == "items" else (
            users, has_user, user_norm)
        todo = np.flatnonzero(~has)
        if not len(todo):
            return
        means, found = _neighbour_mean(adjacency, source, source_has, todo)
        table[todo[found]] = _rescale(means[found], norm)
        has[todo[found]] = True
        counts[f"{kind}_from_{how}"] = counts.get(f"{kind}_from_{how}", 0) + int(found.sum())

    start("items", "users", rt, users, has_user)
    start("users", "items", r, items, has_item)
    start("items", "users", rt, users, has_user)  # items whose only users were new
    start("users", "friends", sp.csr_matrix(data.social, dtype=np.float32), users, has_user)
    category = data.item_category
    by_category = sp.csr_matrix(
        (np.ones(int((category >= 0).sum()), dtype=np.float32),
         (np.flatnonzero(category >= 0), category[category >= 0])),
        shape=(len(items), max(int(category.max(initial=-1)) + 1, 1)))
    known_category = sp.csr_matrix(by_category.multiply(has_item[:, None]))
    centres, found_centre = _neighbour_mean(known_category.T.tocsr(), items,
                                            np.ones(len(items), dtype=bool),
                                            np.arange(by_category.shape[1]))
    start("items", "category",
          sp.csr_matrix(by_category @ sp.diags(found_centre.astype(np.float32))), centres,
          found_centre)
    counts["users_random"] = int((~has_user).sum())
    counts["items_random"] = int((~has_item).sum())

    out = StartTables(users, items, counts=counts)
    if ITEM_BIAS in parent.arrays:
        out.item_bias = _biases(parent.arrays[ITEM_BIAS], child_i, parent_i, len(items),
                                category)
    if USER_BIAS in parent.arrays:
        out.user_bias = _biases(parent.arrays[USER_BIAS], child_u, parent_u, len(users), None)
    return out


def _biases(parent: np.ndarray, child_rows: np.ndarray, parent_rows: np.ndarray, n: int,
            category: np.ndarray | None) -> np.ndarray:
    """Biases for ``n`` rows: the parent's where it had them, else the median of the known rows
    of the same category (``category``), else of all known rows."""
    out = np.full(n, float(np.median(parent[parent_rows])) if len(parent_rows) else 0.0,
                  dtype=np.float32)
    known = np.zeros(n, dtype=bool)
    out[child_rows] = parent[parent_rows]
    known[child_rows] = True
    if category is not None:
        frame = pd.DataFrame({"category": category[known], "bias": out[known]})
        medians = frame[frame.category >= 0].groupby("category").bias.median()
        fill = ~known & np.isin(category, medians.index.to_numpy())
        out[fill] = medians.reindex(category[fill]).to_numpy(dtype=np.float32)
    return out
