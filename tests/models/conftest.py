"""A tiny world whose right answers are known, and the contract tests every Recommender must pass.

The world: two communities, A and B, of 32 users and 8 items each. User ``j`` of a community
interacts in train with its items ``j, j+1, …, j+4 (mod 8)``, so every community item has exactly
20 training users and every user has 3 unseen items of their own community; nobody crosses over.
A model that learns anything must rank a user's 3 unseen community items above the other
community's 8 items. Three "fan" users add popularity: f0 bought A0, B0, A1; f1 bought A0, B0;
f2 bought A0 — so train counts are A0 23, B0 22, A1 21, every other item 20.

A new model reuses the contract::

    from conftest import RecommenderContract

    class TestMyModel(RecommenderContract):
        def make_model(self):
            return MyModel(epochs=5)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from socialrec.features.graph import GraphData, build_graph
from socialrec.features.splits import Split
from socialrec.features.tables import Dataset, conform
from socialrec.models.base import Recommender

N_PER_COMMUNITY = 32
N_ITEMS_PER_COMMUNITY = 8


@dataclass
class TinyWorld:
    data: GraphData
    community_users: dict[str, np.ndarray]  # "A" | "B" -> internal user ids
    community_items: dict[str, np.ndarray]  # "A" | "B" -> internal item ids

    def user(self, external: str) -> int:
        return int(self.data.users.get(external))

    def item(self, external: str) -> int:
        return int(self.data.items.get(external))


def _tiny_world() -> TinyWorld:
    train, valid, test, social = [], [], [], []
    for c in "AB":
        for j in range(N_PER_COMMUNITY):
            user = f"{c.lower()}{j}"
            for step in range(5):
                event = "purchase" if step == 0 else "click"
                train.append((user, f"{c}{(j + step) % 8}", event, 10 * j + step))
            # One of the 3 unseen community items is the valid target, another the test target.
            valid.append((user, f"{c}{(j + 5) % 8}", "click", 1000 + j))
            test.append((user, f"{c}{(j + 6) % 8}", "purchase", 2000 + j))
            # Friendship ring inside the community.
            social.append((user, f"{c.lower()}{(j + 1) % N_PER_COMMUNITY}"))
    for fan, bought in {"f0": ["A0", "B0", "A1"], "f1": ["A0", "B0"], "f2": ["A0"]}.items():
        train += [(fan, item, "purchase", 5000) for item in bought]

    cols = ["user_id", "item_id", "event", "ts"]
    frames = {name: conform(pd.DataFrame(rows, columns=cols), "interactions")
              for name, rows in (("train", train), ("valid", valid), ("test", test))}
    social_df = conform(pd.DataFrame(social, columns=["src", "dst"]), "social")
    dataset = Dataset(
        name="tiny-communities",
        interactions=pd.concat(frames.values(), ignore_index=True),
        social=social_df,
    )
    empty_shares = conform(pd.DataFrame(columns=["sharer_id", "item_id", "recipient_id"]), "shares")
    split = Split(train=frames["train"], valid=frames["valid"], test=frames["test"],
                  social=social_df, train_shares=empty_shares, valid_shares=empty_shares,
                  test_shares=empty_shares, protocol="hand-made")
    data = build_graph(dataset, split)
    return TinyWorld(
        data=data,
        community_users={c: data.users.to_index([f"{c.lower()}{j}" for j in range(N_PER_COMMUNITY)])
                         for c in "AB"},
        community_items={c: data.items.to_index([f"{c}{i}" for i in range(N_ITEMS_PER_COMMUNITY)])
                         for c in "AB"},
    )


@pytest.fixture(scope="session")
def tiny_world() -> TinyWorld:
    return _tiny_world()


class _Forbidden:
    """Stands in for ``data.test``: any use of it fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the model read data.test (.{name}) while fitting")

    def __getitem__(self, key):
        raise AssertionError("the model indexed data.test while fitting")

    def __len__(self):
        raise AssertionError("the model took len(data.test) while fitting")


class RecommenderContract:
    """Tests every :class:`Recommender` must pass on the tiny world.

    Subclass as ``class TestX(RecommenderContract)`` and define :meth:`make_model` (small and fast
    hyper-parameters: the world has 67 users and 16 items; a model with as many factors as items
    can learn the cyclic windows themselves and rank the item opposite a user's window below the
    other community, so keep capacity low or regularise). Override
    :meth:`test_known_right_answer` for a model whose right answer is another one (popularity).
    """

    def make_model(self) -> Recommender:
        raise TypeError(f"{type(self).__name__} must define make_model()")

    @pytest.fixture(scope="class")
    def fitted(self, tiny_world: TinyWorld) -> Recommender:
        return self.make_model().fit(tiny_world.data, show_progress=False)

    def test_embeddings_are_float32_tables_of_the_right_shape(self, fitted, tiny_world):
        user_emb, item_emb = fitted.embeddings()
        data = tiny_world.data
        assert user_emb.dtype == np.float32 and item_emb.dtype == np.float32
        assert user_emb.ndim == 2 and item_emb.ndim == 2
        assert user_emb.shape[0] == data.n_users and item_emb.shape[0] == data.n_items
        assert user_emb.shape[1] == item_emb.shape[1] >= 1
        assert np.isfinite(user_emb).all() and np.isfinite(item_emb).all()

    def test_recommend_excludes_seen_items(self, fitted, tiny_world):
        data = tiny_world.data
        users = np.arange(data.n_users)
        k = 3
        items, scores = fitted.recommend(users, k, exclude=data.train)
        assert items.shape == scores.shape == (data.n_users, k)
        seen = data.train.toarray() > 0
        for u in users:
            shown = items[u][items[u] >= 0]
            assert not seen[u, shown].any(), f"user {u} was shown a training item"
            assert len(shown) == min(k, data.n_items - seen[u].sum())
            assert np.all(np.diff(scores[u][: len(shown)]) <= 0), "scores not best-first"

    def test_known_right_answer(self, fitted, tiny_world):
        """Each community user's 3 unseen community items come first."""
        data = tiny_world.data
        for c, users in tiny_world.community_users.items():
            items, _ = fitted.recommend(users, 3, exclude=data.train)
            own = set(tiny_world.community_items[c].tolist())
            for u, row in zip(users, items, strict=True):
                unseen_own = own - set(data.train[u].indices.tolist())
                assert set(row.tolist()) == unseen_own, f"user {u} of {c}: got {row}"

    def test_save_load_roundtrip_reproduces_scores(self, fitted, tiny_world, tmp_path):
        path = tmp_path / "model.npz"
        fitted.save(path)
        loaded = Recommender.load(path)
        assert loaded.name == fitted.name
        users = np.arange(tiny_world.data.n_users)
        want = fitted.recommend(users, 5, exclude=tiny_world.data.train)
        got = loaded.recommend(users, 5, exclude=tiny_world.data.train)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])

    def test_fit_never_reads_the_test_split(self, tiny_world):
        blind = dataclasses.replace(tiny_world.data, test=_Forbidden())
        self.make_model().fit(blind, show_progress=False)
