"""Fold-in: vectors for products and users a trained model has not seen, from their first
feedback events, against the model's fixed embeddings — no retrain, no torch.

A new product's vector is solved against the fixed user embeddings of the users who interacted
with it (a new user's against the fixed item embeddings of what they interacted with), by the
rule of the model that made the bundle (:func:`rule_for`):

* ``least_squares`` — implicit ALS's half step (Hu, Koren & Volinsky, ICDM 2008; implicit's
  ``recalculate_item`` / ``partial_fit_items``): with ``Y`` the fixed side,
  ``x = (YᵀY + Σ_u (c_u − 1) y_u y_uᵀ + λI)⁻¹ Σ_u c_u y_u`` over the users ``u`` who interacted,
  ``c_u = 1 + α·w_u``, ``w_u`` the summed event weights of the pair. This minimises the model's
  own loss ``Σ_u c_u (p_u − y_uᵀx)² + λ‖x‖²`` over *every* user (``p_u = 1`` for those who
  interacted, 0 with confidence 1 for the others) with the fixed side held still, so for ALS and
  for the GNN under the iALS loss it is exactly the step training would take for that row. It is
  also the rule of models without a fold-in of their own (BPR, popularity, unknown).
* ``propagation`` — the GNN's own rule for the softmax and BPR losses. Their losses have no
  closed-form row update, but their item vectors *are* propagated user vectors: a LightGCN layer
  gives an item ``Σ_u ŵ_u / √(d_u d_i) · e_u`` over its interacting users (``ŵ = log1p(w)`` with
  ``weighted_edges``, the graph's own damping; ``d`` the degrees). The new product gets that
  message from the served (propagated) user vectors: its direction, at the length of a typical
  trained item (the median; unit length for the softmax loss, whose served vectors are cosine).
  It needs no fit, cannot over-fit one event, and leaves the users' vectors where training put
  them. ``d_u`` is the user's training interactions plus the new edge (the bundle keeps the
  pattern, not the weights, of training).

Measured on products removed from training and folded in from their first users
(bench/foldin_rules.py, bench/RESULTS.md), propagation placed them better than least squares for
the GNNs — and for ALS too, whose own least-squares update stays its default here as the model's
own rule (serving's ``SOCIALREC_FOLDIN_RULE`` switches). When the request also says what the
product is (its category, seed items) the service shrinks the folded-in vector towards that
stand-in as if it were one more user (:meth:`FoldIn.with_prior`).

Extra columns. Served embeddings may carry one-sided terms as extra columns (models/socialgnn.py:
an item bias is a column of 1 on the users' side and ``τ·b_i`` on the items'; a user bias or the
push calibration the reverse). :func:`layout_of` finds them (a column that is 1 for every row of
one side); least squares fits an item's own column as part of the regression (the users' 1s
are its regressor), propagation gives it the median of the trained items' values (a new product
is not known to be popular); the other side's columns are 1, as for every trained row.

Everything here is a pure function of the bundle's arrays and the events: the service's
per-replica state (serving/foldin_state.py) applies the same functions to the events it has seen
and tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialrec.features.graph import DEFAULT_EVENT_WEIGHTS
from socialrec.models.bundle import ModelBundle

FoldInKind = Literal["least_squares", "propagation"]

#: The regularisation of least squares for a model that names none (implicit's default λ).
DEFAULT_REGULARIZATION = 0.01


@dataclass(frozen=True)
class FoldInRule:
    """How a model's new rows are folded in (see the module doc)."""

    kind: FoldInKind
    alpha: float = 1.0  # least squares: confidence 1 + alpha * w
    regularization: float = DEFAULT_REGULARIZATION  # least squares: λ
    binary: bool = False  # least squares: w = 1 per pair whatever its events
    log_weights: bool = True  # propagation: an edge weighs log1p(w) (else 1)
    normalize: bool = False  # propagation: unit-length result (cosine models)
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    why: str = ""  # which model setting chose it, for logs and /status


def _section(config: Mapping[str, Any], *path: str) -> dict[str, Any]:
    node: Any = config
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return dict(node) if isinstance(node, Mapping) else {}


def rule_for(meta: Mapping[str, Any], kind: FoldInKind | None = None) -> FoldInRule:
    """The fold-in rule of the model described by a bundle's ``meta.json`` (its model name, its
    resolved config's model section and ``graph.event_weights``, defaults when absent); with
    ``kind``, that rule instead, with the model's settings where it has them (least squares for
    a propagation model: alpha 1, implicit's default λ)."""
    own = _own_rule(meta)
    if kind is None or kind == own.kind:
        return own
    if kind == "propagation":
        return replace(own, kind=kind, why=f"{own.why}; propagation as configured")
    return FoldInRule("least_squares", event_weights=own.event_weights,
                      why=f"{own.why}; least squares (alpha 1) as configured")


def _own_rule(meta: Mapping[str, Any]) -> FoldInRule:
    config = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
    assert isinstance(config, Mapping)
    weights = {**DEFAULT_EVENT_WEIGHTS, **_section(config, "graph", "event_weights")}
    name = str(meta.get("model_name") or meta.get("model") or "unknown")
    models = _section(config, "model")
    if name in ("socialgnn", "lightgcn"):
        params = _section(models, "socialgnn")
        if name == "lightgcn":  # lightgcn inherits socialgnn's keys (models/registry.py)
            params.update(_section(models, "lightgcn"))
        loss = params.get("loss", "softmax")
        if loss == "ials":
            return FoldInRule(
                "least_squares", alpha=float(params.get("confidence_alpha", 1.0)),
                regularization=float(params.get("l2", 1e-4)),
                binary=params.get("confidence_weighting") == "binary", event_weights=weights,
                why=f"{name} with the ials loss: its own least squares (confidence_alpha, l2)")
        return FoldInRule(
            "propagation", log_weights=bool(params.get("weighted_edges", True)),
            normalize=loss == "softmax", event_weights=weights,
            why=f"{name} with the {loss} loss: one layer of its propagation"
                + (", unit length (cosine)" if loss == "softmax" else ""))
    own = _section(models, name)
    if name == "als":
        return FoldInRule(
            "least_squares", alpha=float(own.get("alpha", 1.0)),
            regularization=float(own.get("regularization", DEFAULT_REGULARIZATION)),
            binary=own.get("weighting") == "binary", event_weights=weights,
            why="als: its own least squares (alpha, regularization)")
    return FoldInRule(
        "least_squares", regularization=float(own.get("regularization", DEFAULT_REGULARIZATION)),
        event_weights=weights, why=f"{name}: generic least squares (alpha 1)")


@dataclass(frozen=True)
class Layout:
    """Which embedding columns are learnt on both sides and which are one-sided terms."""

    latent: np.ndarray  # learnt by both sides
    item_terms: np.ndarray  # 1 for every user: an item's own term (its bias)
    user_terms: np.ndarray  # 1 for every item: a user's own term (bias, calibration)


def _ones_columns(emb: np.ndarray) -> np.ndarray:
    if len(emb) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.all(emb == 1.0, axis=0))


def layout_of(user_emb: np.ndarray, item_emb: np.ndarray) -> Layout:
    item_terms = _ones_columns(user_emb)
    user_terms = np.setdiff1d(_ones_columns(item_emb), item_terms)
    latent = np.setdiff1d(np.arange(user_emb.shape[1]), np.union1d(item_terms, user_terms))
    return Layout(latent, item_terms, user_terms)


def pair_weights(events: pd.DataFrame, event_weights: Mapping[str, float]) -> pd.DataFrame:
    """``user_id, item_id, weight``: the summed event weights of each (user, item) pair, as the
    training graph sums them (features/graph.py). Events without an item, or of a kind without
    a weight (``unsubscribe``), are left out."""
    weight = events["event"].map(dict(event_weights))
    keep = events["item_id"].notna() & weight.notna()
    pairs = pd.DataFrame({"user_id": events.loc[keep, "user_id"].astype(str),
                          "item_id": events.loc[keep, "item_id"].astype(str),
                          "weight": weight[keep].astype(np.float64)})
    return pairs.groupby(["user_id", "item_id"], sort=True)["weight"].sum().reset_index()


def least_squares(fixed: np.ndarray, gram: np.ndarray, rows: np.ndarray,
                  confidence: np.ndarray, regularization: float) -> np.ndarray:
    """implicit's row update: ``(G + Σ (c−1) y yᵀ + λI)⁻¹ Σ c y`` over ``fixed[rows]``, with
    ``G = fixedᵀ fixed`` given (computed once per bundle)."""
    y = fixed[rows].astype(np.float64)
    c = np.asarray(confidence, dtype=np.float64)
    a = gram + (y.T * (c - 1.0)) @ y + regularization * np.eye(len(gram))
    try:
        return np.linalg.solve(a, y.T @ c)
    except np.linalg.LinAlgError:  # singular only without regularisation: the least-norm answer
        return np.linalg.lstsq(a, y.T @ c, rcond=None)[0]


class FoldIn:
    """The fold-in of one bundle: its rule, column layout and the per-bundle sums the rule needs
    (Gramians of both sides, degrees), computed once; then each new row costs one ``d × d``
    solve (least squares) or one weighted sum (propagation)."""

    def __init__(self, bundle: ModelBundle, rule: FoldInRule | None = None) -> None:
        self.bundle = bundle
        self.rule = rule or rule_for(bundle.meta)
        self.layout = layout_of(bundle.user_emb, bundle.item_emb)
        lay = self.layout
        #: regressors of an item's fold-in (users' columns) and of a user's (items' columns)
        self.item_cols = np.union1d(lay.latent, lay.item_terms)
        self.user_cols = np.union1d(lay.latent, lay.user_terms)
        self._users = np.asarray(bundle.user_emb[:, self.item_cols], dtype=np.float64)
        self._items = np.asarray(bundle.item_emb[:, self.user_cols], dtype=np.float64)
        self._user_gram: np.ndarray | None = None
        self._item_gram: np.ndarray | None = None
        seen = sp.csr_matrix(bundle.seen)
        self.user_degree = np.diff(seen.indptr).astype(np.float64)
        self.item_degree = np.diff(seen.tocsc().indptr).astype(np.float64)
        self.median_item_terms = (np.median(bundle.item_emb[:, lay.item_terms], axis=0)
                                  if len(bundle.item_emb) else np.zeros(len(lay.item_terms)))
        self.median_user_terms = (np.median(bundle.user_emb[:, lay.user_terms], axis=0)
                                  if len(bundle.user_emb) else np.zeros(len(lay.user_terms)))
        #: the median latent norm of the trained rows of each side: the length of a propagated
        #: new row and of a stand-in (a new product scores as a typical one, not as a bigger or
        #: smaller one; cosine models: 1)
        self.item_norm = _median_norm(bundle.item_emb[:, lay.latent])
        self.user_norm = _median_norm(bundle.user_emb[:, lay.latent])

    @property
    def dim(self) -> int:
        return int(self.bundle.user_emb.shape[1])

    def _gram(self, side: Literal["users", "items"]) -> np.ndarray:
        if side == "users":
            if self._user_gram is None:
                self._user_gram = self._users.T @ self._users
            return self._user_gram
        if self._item_gram is None:
            self._item_gram = self._items.T @ self._items
        return self._item_gram

    def _confidence(self, weights: np.ndarray) -> np.ndarray:
        w = np.ones_like(weights) if self.rule.binary else weights
        return 1.0 + self.rule.alpha * w

    def _edge(self, weights: np.ndarray) -> np.ndarray:
        return np.log1p(weights) if self.rule.log_weights else np.ones_like(weights)

    def item_vector(self, users: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """A new item's served vector from the (internal) ``users`` who interacted with it and
        the summed event weight of each pair."""
        users = np.asarray(users, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        lay, out = self.layout, np.zeros(self.dim, dtype=np.float64)
        out[lay.user_terms] = 1.0
        if self.rule.kind == "least_squares":
            out[self.item_cols] = least_squares(self._users, self._gram("users"), users,
                                                self._confidence(weights),
                                                self.rule.regularization)
        else:
            edge = self._edge(weights) / np.sqrt(self.user_degree[users] + 1.0)
            latent = edge @ self.bundle.user_emb[users][:, lay.latent].astype(np.float64)
            out[lay.latent] = self._scaled(latent, self.item_norm)
            out[lay.item_terms] = self.median_item_terms
        return out.astype(np.float32)

    def user_vector(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """A new user's served vector from the (internal) ``items`` they interacted with."""
        items = np.asarray(items, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        lay, out = self.layout, np.zeros(self.dim, dtype=np.float64)
        out[lay.item_terms] = 1.0
        if self.rule.kind == "least_squares":
            out[self.user_cols] = least_squares(self._items, self._gram("items"), items,
                                                self._confidence(weights),
                                                self.rule.regularization)
        else:
            edge = self._edge(weights) / np.sqrt(self.item_degree[items] + 1.0)
            latent = edge @ self.bundle.item_emb[items][:, lay.latent].astype(np.float64)
            out[lay.latent] = self._scaled(latent, self.user_norm)
            out[lay.user_terms] = self.median_user_terms
        return out.astype(np.float32)

    def _scaled(self, direction: np.ndarray, length: float) -> np.ndarray:
        """``direction`` at unit length for cosine models, else at ``length``: the message's
        direction is what propagation says; its length (LightGCN's ``1/√d`` of the new row's
        own degree, over an unknown number of layers) is set to the trained rows' median, so
        the new row is neither favoured nor handicapped against trained ones where lengths
        matter (a campaign's best product, a user's recommendations)."""
        norm = np.linalg.norm(direction)
        if norm == 0:
            return direction
        return direction / norm * (1.0 if self.rule.normalize else length)

    def mean_item(self, items: np.ndarray) -> np.ndarray | None:
        """The stand-in of a product described by trained ones (seed items, or its category):
        the direction of their mean vector at the trained items' median length (unit for cosine
        models), leaving out items whose latent part is zero (never trained); None when none is
        left."""
        items = np.asarray(items, dtype=np.int64)
        emb = self.bundle.item_emb[items].astype(np.float64)
        lat = self.layout.latent
        if len(lat):
            emb = emb[np.linalg.norm(emb[:, lat], axis=1) > 0]
        if len(emb) == 0:
            return None
        out = emb.mean(axis=0)
        if len(lat):
            out[lat] = self._scaled(out[lat], self.item_norm)
        return out.astype(np.float32)

    def with_prior(self, vector: np.ndarray, n_users: int, prior: np.ndarray,
                   strength: float) -> np.ndarray:
        """A folded-in product's vector shrunk towards its stand-in (:meth:`mean_item` of its
        category or seed items) as if the stand-in were ``strength`` more users:
        ``(n·v + s·p) / (n + s)`` (unit length again for cosine models). With one or two events
        a fold-in is noisy and what the product is said to be is evidence too; the events win
        as they accumulate. (Measured in bench/foldin_rules.py: worth most for an under-trained
        model; with well-trained ones one user's weight is about neutral and more hurts.)"""
        if strength <= 0:
            return vector
        out = (n_users * vector.astype(np.float64) + strength * prior) / (n_users + strength)
        lat = self.layout.latent
        if self.rule.normalize and len(lat):
            out[lat] = self._scaled(out[lat], 1.0)
        return out.astype(np.float32)


def _median_norm(latent: np.ndarray) -> float:
    norms = np.linalg.norm(latent, axis=1) if latent.size else np.zeros(0)
    norms = norms[norms > 0]
    return float(np.median(norms)) if len(norms) else 1.0


def _grouped(pairs: pd.DataFrame, key: str) -> dict[str, pd.DataFrame]:
    return {str(k): g for k, g in pairs.groupby(key, sort=True)}


def fold_in_items(bundle: ModelBundle, events: pd.DataFrame,
                  fold: FoldIn | None = None) -> dict[str, np.ndarray]:
    """The vector of every product of ``events`` (feedback rows: ``user_id, item_id, event``)
    that ``bundle`` does not know, from its events by users the bundle knows (events by users
    it does not know cannot place a product against fixed user vectors and are left out)."""
    fold = fold or FoldIn(bundle)
    pairs = pair_weights(events, fold.rule.event_weights)
    pairs = pairs[~pairs["item_id"].map(bundle.items.__contains__).astype(bool)]
    users = bundle.users.to_index(pairs["user_id"], missing=-1)
    pairs = pairs[users >= 0].assign(user=users[users >= 0])
    return {item: fold.item_vector(g["user"].to_numpy(), g["weight"].to_numpy())
            for item, g in _grouped(pairs, "item_id").items()}


def fold_in_users(bundle: ModelBundle, events: pd.DataFrame,
                  fold: FoldIn | None = None) -> dict[str, np.ndarray]:
    """The vector of every user of ``events`` whom ``bundle`` does not know, or knows without a
    training interaction (known only through friends), from their events on products the bundle
    knows."""
    fold = fold or FoldIn(bundle)
    pairs = pair_weights(events, fold.rule.event_weights)
    known = bundle.users.to_index(pairs["user_id"], missing=-1)
    cold = np.ones(len(pairs), dtype=bool)
    cold[known >= 0] = fold.user_degree[known[known >= 0]] == 0
    pairs = pairs[cold]
    items = bundle.items.to_index(pairs["item_id"], missing=-1)
    pairs = pairs[items >= 0].assign(item=items[items >= 0])
    return {user: fold.user_vector(g["item"].to_numpy(), g["weight"].to_numpy())
            for user, g in _grouped(pairs, "user_id").items()}
