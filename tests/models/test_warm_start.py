"""Warm start: a child keeps every row its parent had and starts new rows from their graph
neighbours; a socialgnn fit started from a parent bundle begins exactly there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from socialrec.features.graph import GraphData
from socialrec.features.idmap import IdMap
from socialrec.models import warm_start
from socialrec.models.warm_start import ParentState, initial_tables


def graph(users: list[str], items: list[str], train: list[tuple[int, int]],
          social: list[tuple[int, int]] = (), category: list[int] | None = None) -> GraphData:
    n_u, n_i = len(users), len(items)
    r = sp.csr_matrix((np.ones(len(train), dtype=np.float32),
                       ([u for u, _ in train], [i for _, i in train])), shape=(n_u, n_i))
    s = sp.csr_matrix((np.ones(2 * len(social), dtype=np.float32),
                       ([a for a, _ in social] + [b for _, b in social],
                        [b for _, b in social] + [a for a, _ in social])), shape=(n_u, n_u))
    empty = sp.csr_matrix((n_u, n_i), dtype=np.float32)
    shares = pd.DataFrame({"sharer": [], "item": [], "recipient": [], "ts": [], "joined": []})
    return GraphData(IdMap(users), IdMap(items), r, empty, empty, s, empty, shares, shares,
                     shares, np.asarray(category if category else [-1] * n_i, dtype=np.int64),
                     ["c0", "c1"], np.ones(n_u, dtype=bool))


def test_old_rows_are_kept_and_new_rows_start_from_their_neighbours():
    parent = ParentState(IdMap(["a", "b", "c"]), IdMap(["x", "y"]), {
        warm_start.USERS: np.array([[1, 0], [0, 2], [3, 3]], dtype=np.float32),
        warm_start.ITEMS: np.array([[1, 1], [0, 4]], dtype=np.float32),
        warm_start.ITEM_BIAS: np.array([0.5, -0.5], dtype=np.float32)})
    # the child knows the parent's ids (appended after them), plus: user d who bought x, user e
    # with no items and one friend (a), user f alone; item z bought by b, item w bought only by
    # the new user d, item v with nothing but a category (that of x and y)
    child = graph(["a", "b", "c", "d", "e", "f"], ["x", "y", "z", "w", "v"],
                  train=[(0, 0), (1, 2), (3, 0), (3, 3)], social=[(4, 0)],
                  category=[0, 0, -1, -1, 0])
    rng = np.random.default_rng(0)
    start = initial_tables(parent, child, rng.normal(size=(6, 2)), rng.normal(size=(5, 2)))
    np.testing.assert_array_equal(start.users[:3], parent.arrays[warm_start.USERS])
    np.testing.assert_array_equal(start.items[:2], parent.arrays[warm_start.ITEMS])
    user_norm = np.median(np.linalg.norm(parent.arrays[warm_start.USERS], axis=1))
    item_norm = np.median(np.linalg.norm(parent.arrays[warm_start.ITEMS], axis=1))

    def direction(v: np.ndarray, norm: float) -> np.ndarray:
        return v / np.linalg.norm(v) * norm

    # z: its one (old) user b; d: the mean of x (old) and w; w: from its new user d... w has no
    # old user, so d starts from x alone, then w from d
    np.testing.assert_allclose(start.items[2], direction(np.array([0, 2.0]), item_norm), rtol=1e-6)
    np.testing.assert_allclose(start.users[3], direction(np.array([1, 1.0]), user_norm), rtol=1e-6)
    np.testing.assert_allclose(start.items[3], direction(start.users[3], item_norm), rtol=1e-6)
    # e: from its friend a; v: its category's known items (x, y)
    np.testing.assert_allclose(start.users[4], direction(np.array([1, 0.0]), user_norm),
                               rtol=1e-6)
    np.testing.assert_allclose(start.items[4], direction(np.array([0.5, 2.5]), item_norm),
                               rtol=1e-6)
    assert start.counts == {"users_kept": 3, "items_kept": 2, "items_from_users": 2,
                            "users_from_items": 1, "users_from_friends": 1,
                            "items_from_category": 1, "users_random": 1, "items_random": 0}
    # biases: kept, and a new item of a known category gets that category's median
    np.testing.assert_allclose(start.item_bias, [0.5, -0.5, 0.0, 0.0, 0.0])


def test_a_parent_of_another_dimension_is_refused():
    parent = ParentState(IdMap(["a"]), IdMap(["x"]), {
        warm_start.USERS: np.zeros((1, 3), dtype=np.float32),
        warm_start.ITEMS: np.zeros((1, 3), dtype=np.float32)})
    child = graph(["a"], ["x"], train=[(0, 0)])
    with pytest.raises(ValueError, match="embedding_dim changed"):
        initial_tables(parent, child, np.zeros((1, 2)), np.zeros((1, 2)))


def test_a_socialgnn_fit_starts_from_the_parent_bundle(tmp_path):
    from socialrec.models.socialgnn import SocialGNNRecommender

    parent_graph = graph(["a", "b"], ["x", "y"], train=[(0, 0), (1, 1)])
    parent = SocialGNNRecommender(embedding_dim=4, num_layers=1, epochs=2, loss="bpr",
                                  batch_size=4, seed=1).fit(parent_graph, show_progress=False)
    state = parent.warm_start_state()
    assert state is not None
    bundle_dir = tmp_path / "parent"
    warm_start.save_state(bundle_dir, state)
    parent_graph.users.save(bundle_dir / "users.npy")
    parent_graph.items.save(bundle_dir / "items.npy")

    child_graph = graph(["a", "b", "c"], ["x", "y", "z"], train=[(0, 0), (1, 1), (2, 0), (1, 2)])
    child = SocialGNNRecommender(embedding_dim=4, num_layers=1, epochs=0, loss="bpr",
                                 warm_start=str(bundle_dir)).fit(child_graph,
                                                                 show_progress=False)
    start = child.warm_start_state()
    assert start is not None
    np.testing.assert_array_equal(start[warm_start.USERS][:2], state[warm_start.USERS])
    np.testing.assert_array_equal(start[warm_start.ITEMS][:2], state[warm_start.ITEMS])
    assert child.warm_start_counts["users_kept"] == 2
    assert child.warm_start_counts["items_from_users"] == 1
