"""Baselines behind the :class:`Recommender` contract: popularity, implicit's ALS and BPR.

A model that does not beat these is not promoted. All of them fit on ``data.train`` only and reduce
to user / item embeddings scored by inner product. Each registers itself with its typed
hyper-parameters (models/registry.py); the defaults are those of configs/defaults.yaml.
"""

from __future__ import annotations

from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from socialrec.features.graph import GraphData
from socialrec.models.base import Recommender
from socialrec.models.registry import ModelConfig, register_model

#: what ``w`` is in Hu et al.'s confidence ``1 + alpha * w`` (:func:`implicit_confidence`)
ConfidenceWeighting = Literal["plain", "binary", "bm25"]


def _fitted(value: np.ndarray | None, model: Recommender) -> np.ndarray:
    if value is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted yet: call fit(data) first")
    return value


class PopularityConfig(ModelConfig):
    weighted: bool = Field(False, description="sum the event weights of each item's training users "
                                              "instead of counting them")


@register_model("popularity", PopularityConfig)
class PopularityModel(Recommender):
    """Everyone gets the most popular items: the number of training users of each item (or, with
    ``weighted``, the sum of their event weights).

    Embeddings are one column: users ``[1]``, items ``[1 - rank / n_items]`` where ``rank`` orders
    items by popularity, ties by item id. Scores are then distinct, so every ranking is fully
    determined; the counts themselves are in ``counts``.
    """

    name = "popularity"

    def __init__(self, config: PopularityConfig | None = None, **overrides: Any) -> None:
        self.config = PopularityConfig.with_overrides(config, overrides)
        self.counts: np.ndarray | None = None
        self._n_users = 0

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        train = sp.csr_matrix(data.train)
        train.eliminate_zeros()
        if self.config.weighted:
            self.counts = np.asarray(train.sum(axis=0), dtype=np.float64).ravel()
        else:
            self.counts = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64)
        self._n_users = train.shape[0]
        return self

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        counts = _fitted(self.counts, self)
        order = np.lexsort((np.arange(len(counts)), -counts))  # most popular first, then lower id
        rank = np.empty(len(counts), dtype=np.float64)
        rank[order] = np.arange(len(counts))
        item_emb = (1.0 - rank / max(len(counts), 1)).astype(np.float32)[:, None]
        return np.ones((self._n_users, 1), dtype=np.float32), item_emb


def implicit_confidence(train: sp.csr_matrix, alpha: float, weighting: ConfidenceWeighting
                        ) -> sp.csr_matrix:
    """Hu et al.'s confidence ``1 + alpha * w`` of every training pair (users × items), with ``w``
    the summed event weights (``"plain"``), 1 (``"binary"``) or implicit's ``bm25_weight``."""
    if weighting not in ("plain", "binary", "bm25"):
        raise ValueError(f"weighting must be plain, binary or bm25, got {weighting!r}")
    w = sp.csr_matrix(train, dtype=np.float32, copy=True)
    w.eliminate_zeros()
    if weighting == "binary":
        w.data[:] = 1.0
    elif weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        w = bm25_weight(w, K1=100, B=0.8).tocsr().astype(np.float32)
    w.data = 1.0 + alpha * w.data
    return w


class ALSConfig(ModelConfig):
    factors: int = Field(64, description="embedding size")
    regularization: float = Field(0.01, description="L2 weight λ (implicit's default)")
    alpha: float = Field(1.0, description="confidence slope: confidence = 1 + alpha * weight")
    iterations: int = Field(15, description="ALS sweeps (implicit's default)")
    weighting: ConfidenceWeighting = Field(
        "plain", description="what the weight is: summed event weights (plain), 1 (binary) or "
                             "implicit's bm25_weight (bm25)")
    seed: int = Field(2026, description="initialisation seed")
    num_threads: int = Field(0, description="fitting threads, 0 = all cores (results do not "
                                            "depend on it)")


@register_model("als", ALSConfig)
class ALSModel(Recommender):
    """Weighted matrix factorisation by alternating least squares, via ``implicit.cpu.als``.

    Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.
    Confidence is theirs, ``c_ui = 1 + alpha * w_ui``, with ``w_ui`` the summed event weights of
    ``data.train`` (``weighting="binary"``: 1 per pair; ``"bm25"``: implicit's ``bm25_weight``, as
    in its examples). Embeddings are implicit's ``user_factors`` / ``item_factors``. Hu et al.
    found ``alpha`` ~40 best on raw play counts; our event weights are already 0.5–4 per event, so
    tune it on the validation split.
    """

    name = "als"

    def __init__(self, config: ALSConfig | None = None, **overrides: Any) -> None:
        self.config = ALSConfig.with_overrides(config, overrides)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def confidence(self, train: sp.csr_matrix) -> sp.csr_matrix:
        """The users × items confidence matrix implicit is fit on: ``1 + alpha * w``."""
        return implicit_confidence(train, self.config.alpha, self.config.weighting)

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit's ALS is ~10x slower when OpenBLAS also threads (and warns about it).
        c = self.config
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=c.factors, regularization=c.regularization, alpha=1.0,
                iterations=c.iterations, random_state=c.seed, num_threads=c.num_threads,
                dtype=np.float32,
            )
            model.fit(self.confidence(data.train), show_progress=show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return _fitted(self.user_factors, self), _fitted(self.item_factors, self)


class BPRConfig(ModelConfig):
    factors: int = Field(64, description="latent size (embeddings are one wider: the item bias)")
    learning_rate: float = Field(0.01, description="SGD step (implicit's default)")
    regularization: float = Field(0.01, description="L2 weight")
    iterations: int = Field(100, description="epochs over the training pairs")
    verify_negative_samples: bool = Field(
        True, description="resample negatives the user did interact with")
    seed: int = Field(2026, description="initialisation and sampling seed")
    num_threads: int = Field(0, description="SGD threads, 0 = all cores; parallel SGD is Hogwild, "
                                            "so only 1 gives the same factors on every run")


@register_model("bpr", BPRConfig)
class BPRModel(Recommender):
    """Bayesian Personalized Ranking matrix factorisation, via ``implicit.cpu.bpr``.

    Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009. Fit on the
    binary pattern of ``data.train`` (BPR samples observed pairs; weights play no part).

    implicit learns ``factors`` latent columns plus an item bias, stored as one more column of
    ``item_factors`` matched by a column of ones in ``user_factors``. The embeddings keep that
    column, so they are ``factors + 1`` wide and their inner product is exactly implicit's score.
    """

    name = "bpr"

    def __init__(self, config: BPRConfig | None = None, **overrides: Any) -> None:
        self.config = BPRConfig.with_overrides(config, overrides)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        pattern = sp.csr_matrix(data.train, dtype=np.float32, copy=True)
        pattern.eliminate_zeros()
        pattern.data[:] = 1.0
        c = self.config
        model = BayesianPersonalizedRanking(
            factors=c.factors, learning_rate=c.learning_rate, regularization=c.regularization,
            iterations=c.iterations, verify_negative_samples=c.verify_negative_samples,
            random_state=c.seed, num_threads=c.num_threads, dtype=np.float32,
        )
        model.fit(pattern, show_progress=show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return _fitted(self.user_factors, self), _fitted(self.item_factors, self)
