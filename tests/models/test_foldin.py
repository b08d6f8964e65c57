"""Fold-in (models/foldin.py): a folded-in vector is the model's own least-squares row update
(checked against numpy.linalg.lstsq, a closed form by hand and implicit's recalculate_item), or
the GNN's one-layer propagation; the rule follows the bundle's model; the pure functions fold in
exactly the products and users a bundle does not know."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from socialrec.features.idmap import IdMap
from socialrec.models.bundle import ModelBundle
from socialrec.models.foldin import (
    FoldIn,
    FoldInRule,
    fold_in_items,
    fold_in_users,
    layout_of,
    pair_weights,
    rule_for,
)

WEIGHTS = {"view": 0.5, "click": 1.0, "purchase": 4.0, "share": 3.0, "join": 4.0,
           "push_open": 1.0, "cart": 2.0, "rate": 1.0}


def tiny_bundle(user_emb: np.ndarray, item_emb: np.ndarray, seen: sp.csr_matrix | None = None,
                meta: dict | None = None) -> ModelBundle:
    n_users, n_items = len(user_emb), len(item_emb)
    seen = seen if seen is not None else sp.csr_matrix(np.ones((n_users, n_items),
                                                               dtype=np.float32))
    return ModelBundle(
        users=IdMap(f"u{i}" for i in range(n_users)), items=IdMap(f"i{j}" for j in range(n_items)),
        user_emb=user_emb.astype(np.float32), item_emb=item_emb.astype(np.float32),
        social=sp.csr_matrix((n_users, n_users), dtype=np.float32), seen=seen,
        purchases=sp.csr_matrix((n_users, n_items), dtype=np.float32),
        popularity=np.ones(n_items, dtype=np.float32),
        item_category=np.zeros(n_items, dtype=np.int64),
        push_opt_in=np.ones(n_users, dtype=bool), meta=meta or {})


def feedback(rows: list[tuple[str, str | None, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event"])


LS = FoldInRule("least_squares", alpha=2.0, regularization=0.3, event_weights=WEIGHTS)


def test_least_squares_equals_lstsq_of_the_weighted_problem():
    """min Σ_u c_u (p_u − y_uᵀx)² + λ‖x‖² over every user, as an ordinary least-squares
    problem: rows √c_u·y_u against √c_u·p_u, plus √λ·I against 0."""
    rng = np.random.default_rng(0)
    users = rng.normal(size=(7, 3))
    bundle = tiny_bundle(users, rng.normal(size=(4, 3)))
    events = feedback([("u1", "new", "click"), ("u1", "new", "purchase"),
                       ("u4", "new", "view"), ("u6", "new", "share")])
    x = fold_in_items(bundle, events, FoldIn(bundle, LS))["new"]

    w = np.zeros(7)
    w[[1, 4, 6]] = [1.0 + 4.0, 0.5, 3.0]  # summed event weights per user
    c = 1.0 + LS.alpha * w
    c[w == 0] = 1.0  # unobserved pairs: confidence 1, preference 0
    p = (w > 0).astype(float)
    a = np.vstack([np.sqrt(c)[:, None] * users, np.sqrt(LS.regularization) * np.eye(3)])
    b = np.concatenate([np.sqrt(c) * p, np.zeros(3)])
    want = np.linalg.lstsq(a, b, rcond=None)[0]
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)


def test_least_squares_by_hand_in_one_dimension():
    """One factor: x = Σ_obs c·y / (Σ_all y² + Σ_obs (c − 1)·y² + λ)."""
    users = np.array([[1.0], [2.0], [-1.0]])
    bundle = tiny_bundle(users, np.array([[0.5]]))
    x = fold_in_items(bundle, feedback([("u1", "new", "click")]), FoldIn(bundle, LS))["new"]
    c = 1 + 2.0 * 1.0  # alpha 2, a click weighs 1
    want = c * 2.0 / ((1 + 4 + 1) + (c - 1) * 4 + 0.3)
    assert x[0] == pytest.approx(want, rel=1e-6)


def test_least_squares_equals_implicit_recalculate_item():
    """For an ALS bundle the fold-in is implicit's own row update (its recalculate_item /
    partial_fit_items) with the model's alpha and regularisation."""
    from implicit.cpu.als import AlternatingLeastSquares

    train = sp.random(40, 15, density=0.3, format="csr", random_state=2, dtype=np.float32)
    train.data = 1.0 + 2.0 * np.ceil(train.data * 3)  # confidence 1 + alpha * w
    with threadpool_limits(1, "blas"):  # implicit warns when BLAS threads
        als = AlternatingLeastSquares(factors=4, regularization=0.05, alpha=1.0, iterations=3,
                                      random_state=0, dtype=np.float32, num_threads=1)
        als.fit(train, show_progress=False)
    meta = {"model_name": "als",
            "config": {"model": {"als": {"alpha": 2.0, "regularization": 0.05}},
                       "graph": {"event_weights": WEIGHTS}}}
    bundle = tiny_bundle(np.asarray(als.user_factors), np.asarray(als.item_factors), meta=meta)
    users = np.array([3, 8, 21])
    events = feedback([("u3", "new", "purchase"), ("u8", "new", "click"),
                       ("u21", "new", "click"), ("u21", "new", "view")])
    mine = fold_in_items(bundle, events)["new"]
    weights = np.array([4.0, 1.0, 1.5])
    row = sp.csr_matrix((1.0 + 2.0 * weights, (np.zeros(3, dtype=int), users)), shape=(1, 40))
    theirs = als.recalculate_item(0, row)
    np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)


def test_propagation_of_a_cosine_model_by_hand():
    """Softmax GNN: Σ_u log1p(w_u)/√(d_u + 1) · e_u, scaled to unit length."""
    users = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    seen = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=np.float32))
    meta = {"model_name": "socialgnn", "config": {"model": {"socialgnn": {"loss": "softmax"}}}}
    bundle = tiny_bundle(users, np.eye(3, 2), seen=seen, meta=meta)
    x = fold_in_items(bundle, feedback([("u0", "new", "purchase"), ("u1", "new", "click")]))
    want = np.log1p(4.0) / np.sqrt(4) * users[0] + np.log1p(1.0) / np.sqrt(2) * users[1]
    np.testing.assert_allclose(x["new"], want / np.linalg.norm(want), rtol=1e-6)


def test_extra_columns_are_fitted_or_kept_as_trained_rows_have_them():
    """An item-bias column (1 for every user) is fitted by least squares and is the trained
    items' median under propagation; a user-side column (1 for every item) is 1."""
    rng = np.random.default_rng(3)
    lat_u, lat_i = rng.normal(size=(20, 3)), rng.normal(size=(6, 3))
    bias = rng.normal(size=(6, 1))
    user_terms = rng.normal(size=(20, 1))
    users = np.hstack([lat_u, np.ones((20, 1)), user_terms])
    items = np.hstack([lat_i, bias, np.ones((6, 1))])
    layout = layout_of(users, items)
    assert layout.latent.tolist() == [0, 1, 2]
    assert layout.item_terms.tolist() == [3] and layout.user_terms.tolist() == [4]
    events = feedback([("u2", "new", "purchase"), ("u5", "new", "click")])

    bundle = tiny_bundle(users, items)
    x = fold_in_items(bundle, events, FoldIn(bundle, LS))["new"]
    assert x[4] == 1.0
    aug = users[:, :4]  # the regression sees the latent columns and the users' 1s
    w = np.zeros(20)
    w[[2, 5]] = [4.0, 1.0]
    c = np.where(w > 0, 1 + LS.alpha * w, 1.0)
    a = np.vstack([np.sqrt(c)[:, None] * aug, np.sqrt(LS.regularization) * np.eye(4)])
    b = np.concatenate([np.sqrt(c) * (w > 0), np.zeros(4)])
    np.testing.assert_allclose(x[:4], np.linalg.lstsq(a, b, rcond=None)[0], rtol=1e-5,
                               atol=1e-6)

    prop = FoldIn(bundle, FoldInRule("propagation", normalize=True, event_weights=WEIGHTS))
    y = fold_in_items(bundle, events, prop)["new"]
    assert y[3] == pytest.approx(float(np.median(bias)), rel=1e-6) and y[4] == 1.0
    assert np.linalg.norm(y[:3]) == pytest.approx(1.0, rel=1e-6)


def test_the_rule_follows_the_model_of_the_bundle():
    def meta(name: str, **model: dict) -> dict:
        return {"model_name": name, "config": {"model": model}}

    als = rule_for(meta("als", als={"alpha": 5.0, "regularization": 0.2, "weighting": "binary"}))
    assert (als.kind, als.alpha, als.regularization, als.binary) == ("least_squares", 5.0, 0.2,
                                                                     True)
    ials = rule_for(meta("socialgnn", socialgnn={"loss": "ials", "confidence_alpha": 3.0,
                                                 "l2": 0.1}))
    assert (ials.kind, ials.alpha, ials.regularization) == ("least_squares", 3.0, 0.1)
    softmax = rule_for(meta("socialgnn", socialgnn={"loss": "softmax", "weighted_edges": False}))
    assert softmax.kind == "propagation" and softmax.normalize and not softmax.log_weights
    lightgcn = rule_for(meta("lightgcn", socialgnn={"loss": "softmax"}, lightgcn={"loss": "bpr"}))
    assert lightgcn.kind == "propagation" and not lightgcn.normalize
    assert rule_for({"model": "random"}).kind == "least_squares"
    weights = rule_for({"config": {"graph": {"event_weights": {"click": 7.0}}}}).event_weights
    assert weights["click"] == 7.0 and weights["purchase"] == 4.0
    # a configured rule instead of the model's own (SOCIALREC_FOLDIN_RULE)
    cosine = meta("socialgnn", socialgnn={"loss": "softmax"})
    assert rule_for(cosine, "least_squares").kind == "least_squares"
    assert rule_for(meta("als", als={}), "propagation").kind == "propagation"
    assert rule_for(cosine, "propagation") == rule_for(cosine)  # its own already


def test_only_what_the_bundle_does_not_know_is_folded_in():
    rng = np.random.default_rng(4)
    seen = sp.csr_matrix(np.vstack([np.ones((4, 3)), np.zeros((1, 3))]).astype(np.float32))
    bundle = tiny_bundle(rng.normal(size=(5, 2)), rng.normal(size=(3, 2)), seen=seen)
    events = feedback([
        ("u0", "i1", "purchase"),     # known user, known item: the model has it
        ("u1", "new1", "click"),      # a new item from a known user
        ("stranger", "new1", "buy"),  # a kind without a weight: left out
        ("stranger", "new2", "click"),  # a new item seen only by a new user: no vector
        ("stranger", "i2", "click"),  # a new user on a known item
        ("u4", "i0", "view"),         # a user the model knows without an interaction
        ("u4", None, "unsubscribe"),
    ])
    assert set(fold_in_items(bundle, events)) == {"new1"}
    assert set(fold_in_users(bundle, events)) == {"stranger", "u4"}
    pairs = pair_weights(feedback([("a", "x", "click"), ("a", "x", "purchase"),
                                   ("a", None, "click")]), WEIGHTS)
    assert pairs.to_dict("records") == [{"user_id": "a", "item_id": "x", "weight": 5.0}]


def test_a_stand_in_is_the_mean_of_trained_products():
    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # item 2 was never trained
    bundle = tiny_bundle(np.array([[1.0, 2.0], [3.0, 4.0]]), items)
    fold = FoldIn(bundle, FoldInRule("least_squares"))
    # the mean's direction at the trained items' median length (1 here)
    np.testing.assert_allclose(fold.mean_item(np.array([0, 1, 2])), [2 ** -0.5, 2 ** -0.5],
                               rtol=1e-6)
    assert fold.mean_item(np.array([2])) is None
    longer = tiny_bundle(np.array([[1.0, 2.0], [3.0, 4.0]]), items * 3.0)
    np.testing.assert_allclose(FoldIn(longer, FoldInRule("least_squares")).mean_item(
        np.array([0, 1])), [3 * 2 ** -0.5, 3 * 2 ** -0.5], rtol=1e-6)


def test_a_propagated_row_has_a_trained_rows_length_and_shrinks_towards_its_prior():
    rng = np.random.default_rng(5)
    items = rng.normal(size=(9, 4)) * rng.uniform(0.5, 3.0, size=(9, 1))
    bundle = tiny_bundle(rng.normal(size=(30, 4)), items)
    bpr = FoldIn(bundle, FoldInRule("propagation", normalize=False))
    v = bpr.item_vector(np.array([1, 2, 3]), np.array([4.0, 1.0, 1.0]))
    assert np.linalg.norm(v) == pytest.approx(np.median(np.linalg.norm(items, axis=1)), rel=1e-5)
    prior = bpr.mean_item(np.array([0, 5]))
    np.testing.assert_allclose(bpr.with_prior(v, 3, prior, 1.0), (3 * v + prior) / 4, rtol=1e-6)
    np.testing.assert_allclose(bpr.with_prior(v, 3, prior, 0.0), v)
    cosine = FoldIn(bundle, FoldInRule("propagation", normalize=True))
    w = cosine.with_prior(cosine.item_vector(np.array([1]), np.array([1.0])), 1,
                          cosine.mean_item(np.array([0])), 3.0)
    assert np.linalg.norm(w) == pytest.approx(1.0, rel=1e-6)
