"""Baselines behind the :class:`Recommender` contract: popularity, implicit's ALS and BPR.

A model that does not beat these is not promoted. All of them fit on ``data.train`` only and reduce
to user / item embeddings scored by inner product. ``make_model`` builds any registered model by its
config name; other modules add theirs with ``@register_model("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self, TypeVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from socialrec.features.graph import GraphData
from socialrec.models.base import Recommender

_MODELS: dict[str, Callable[..., Recommender]] = {}
F = TypeVar("F", bound=Callable[..., Recommender])


def register_model(name: str) -> Callable[[F], F]:
    """Class (or factory) decorator: ``make_model(name, params)`` calls it with ``**params``."""

    def add(factory: F) -> F:
        if name in _MODELS and _MODELS[name] is not factory:
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name]}")
        _MODELS[name] = factory
        return factory

    return add


def registered_models() -> list[str]:
    return sorted(_MODELS)


def make_model(name: str, params: dict[str, Any] | None = None) -> Recommender:
    """The model registered as ``name``, built from its hyper-parameters (a config section)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(registered_models())}")
    try:
        return _MODELS[name](**(params or {}))
    except TypeError as e:
        raise ValueError(f"bad parameters for model {name!r}: {e}") from e


def _fitted(value: np.ndarray | None, model: Recommender) -> np.ndarray:
    if value is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted yet: call fit(data) first")
    return value


@register_model("popularity")
class PopularityModel(Recommender):
    """Everyone gets the most popular items: the number of training users of each item (or, with
    ``weighted``, the sum of their event weights).

    Embeddings are one column: users ``[1]``, items ``[1 - rank / n_items]`` where ``rank`` orders
    items by popularity, ties by item id. Scores are then distinct, so every ranking is fully
    determined; the counts themselves are in ``counts``.
    """

    name = "popularity"

    def __init__(self, weighted: bool = False) -> None:
        self.weighted = weighted
        self.counts: np.ndarray | None = None
        self._n_users = 0

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        train = sp.csr_matrix(data.train)
        train.eliminate_zeros()
        if self.weighted:
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


def implicit_confidence(train: sp.csr_matrix, alpha: float, weighting: str) -> sp.csr_matrix:
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


@register_model("als")
class ALSModel(Recommender):
    """Weighted matrix factorisation by alternating least squares, via ``implicit.cpu.als``.

    Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.
    Confidence is theirs, ``c_ui = 1 + alpha * w_ui``, with ``w_ui`` the summed event weights of
    ``data.train`` (``weighting="binary"``: 1 per pair; ``"bm25"``: implicit's ``bm25_weight``, as
    in its examples). Embeddings are implicit's ``user_factors`` / ``item_factors``.

    Args:
        factors: embedding size (64).
        regularization: L2 weight λ (0.01, implicit's default).
        alpha: confidence slope α (1.0; Hu et al. found ~40 best on raw play counts — our event
            weights are already 0.5–4 per event, so tune it on the validation split).
        iterations: ALS sweeps (15, implicit's default).
        weighting: "plain" | "binary" | "bm25" — what ``w_ui`` is.
        seed: initialisation seed (2026).
        num_threads: fitting threads, 0 = all cores (results do not depend on it).
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        weighting: str = "plain",
        seed: int = 2026,
        num_threads: int = 0,
    ) -> None:
        if weighting not in ("plain", "binary", "bm25"):
            raise ValueError(f"weighting must be plain, binary or bm25, got {weighting!r}")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.seed = seed
        self.num_threads = num_threads
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def confidence(self, train: sp.csr_matrix) -> sp.csr_matrix:
        """The users × items confidence matrix implicit is fit on: ``1 + alpha * w``."""
        return implicit_confidence(train, self.alpha, self.weighting)

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit's ALS is ~10x slower when OpenBLAS also threads (and warns about it).
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=1.0,
                iterations=self.iterations, random_state=self.seed,
                num_threads=self.num_threads, dtype=np.float32,
            )
            model.fit(self.confidence(data.train), show_progress=show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return _fitted(self.user_factors, self), _fitted(self.item_factors, self)


@register_model("bpr")
class BPRModel(Recommender):
    """Bayesian Personalized Ranking matrix factorisation, via ``implicit.cpu.bpr``.

    Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009. Fit on the
    binary pattern of ``data.train`` (BPR samples observed pairs; weights play no part).

    implicit learns ``factors`` latent columns plus an item bias, stored as one more column of
    ``item_factors`` matched by a column of ones in ``user_factors``. The embeddings keep that
    column, so they are ``factors + 1`` wide and their inner product is exactly implicit's score.

    Args:
        factors: latent size (64; embeddings are 65 wide).
        learning_rate: SGD step (0.01, implicit's default).
        regularization: L2 weight (0.01).
        iterations: epochs over the training pairs (100).
        verify_negative_samples: resample negatives the user did interact with (True).
        seed: initialisation and sampling seed (2026).
        num_threads: SGD threads, 0 = all cores. Parallel SGD is Hogwild, so only
            ``num_threads=1`` gives the same factors on every run.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        verify_negative_samples: bool = True,
        seed: int = 2026,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.verify_negative_samples = verify_negative_samples
        self.seed = seed
        self.num_threads = num_threads
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        pattern = sp.csr_matrix(data.train, dtype=np.float32, copy=True)
        pattern.eliminate_zeros()
        pattern.data[:] = 1.0
        model = BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            verify_negative_samples=self.verify_negative_samples, random_state=self.seed,
            num_threads=self.num_threads, dtype=np.float32,
        )
        model.fit(pattern, show_progress=show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return _fitted(self.user_factors, self), _fitted(self.item_factors, self)
