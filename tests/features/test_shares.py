"""Share candidates and share groups (features/shares.py), the one definition evaluation,
training and serving read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialrec.features.shares import share_candidates, share_groups
from socialrec.features.sparse import binary
from tests.support.share_worlds import DIAMOND


def test_one_hop_candidates_are_exactly_the_friends():
    assert [c.tolist() for c in share_candidates(DIAMOND, np.array([0, 3]), hops=1)] == \
        [[1, 2], [1, 2, 4]]


def test_two_hop_candidates_add_friends_of_friends_but_never_the_sharer():
    (two,) = share_candidates(DIAMOND, np.array([0]), hops=2)
    assert two.tolist() == [1, 2, 3]  # c (3) is a friend of a friend; d (4) is three hops away
    (from_c,) = share_candidates(DIAMOND, np.array([3]), hops=2)
    assert 3 not in from_c and set(from_c.tolist()) == {0, 1, 2, 4}


def test_weights_do_not_change_the_candidates():
    """Evaluation passes the binary graph, serving the tie weights: the same sets, sorted."""
    rng = np.random.default_rng(1)
    m = sp.random(60, 60, density=0.08, random_state=2, format="csr")
    sharers = rng.integers(0, 60, 25)
    for hops in (1, 2):
        weighted = share_candidates(m, sharers, hops)
        plain = share_candidates(binary(m), sharers, hops)
        dense = m.toarray() != 0
        for s, a, b in zip(sharers, weighted, plain, strict=True):
            reach = dense[s] | (dense[dense[s]].any(axis=0) if hops == 2 else False)
            reach[s] = False
            assert np.array_equal(a, b) and a.tolist() == np.flatnonzero(reach).tolist()


def test_share_groups_gather_recipients_and_joiners_and_drop_unknown_ids():
    records = pd.DataFrame(
        [(2, 5, 9, False), (0, 1, 4, True), (0, 1, 3, False), (0, 1, 4, False), (0, 0, 7, True),
         (-1, 1, 3, True), (0, 1, -1, True)],
        columns=["sharer", "item", "recipient", "joined"])
    groups = share_groups(records)
    assert groups[["sharer", "item"]].to_numpy().tolist() == [[0, 0], [0, 1], [2, 5]]
    assert [r.tolist() for r in groups["recipients"]] == [[7], [3, 4], [9]]
    assert [j.tolist() for j in groups["joined"]] == [[7], [4], []]
    empty = share_groups(records.iloc[:0])
    assert len(empty) == 0 and list(empty.columns) == ["sharer", "item", "recipients", "joined"]
