"""The one model contract every recommender here follows (after implicit's RecommenderBase).

Every model reduces to a user and an item embedding table scored by inner product, so evaluation,
index building and serving treat them alike (maximum inner product search).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import scipy.sparse as sp

from socialrec.features.graph import GraphData
from socialrec.features.ranking import topk_scores

#: validate(user_emb, item_emb) -> value of the early-stopping metric (higher is better)
Validator = Callable[[np.ndarray, np.ndarray], float]


class Recommender(ABC):
    """fit → embeddings → recommend, save / load as ``.npz`` (``allow_pickle=False``)."""

    #: Short name used in configs, MLflow run names and results tables.
    name: str = "base"

    #: Whether ``fit`` stops early on a :data:`Validator` given to the constructor (``validator=``).
    early_stopping: ClassVar[bool] = False

    #: Whether the model is built from other registered models (``model_section=``: the whole
    #: ``model:`` section of the config, each part reading its own; models/blend.py).
    composite: ClassVar[bool] = False

    @abstractmethod
    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        """Learn from ``data.train`` (and ``data.social`` where the model uses it).

        ``data.valid`` may be used for early stopping; ``data.test`` must never be read.
        """

    @abstractmethod
    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(user_emb, item_emb)`` as float32 arrays; score(u, i) = user_emb[u] @ item_emb[i]."""

    def warm_start_state(self) -> dict[str, np.ndarray] | None:
        """The parameters a retrain of this model can start from (models/warm_start.py), kept in
        its bundle; None: this model always trains from scratch."""
        return None

    def recommend(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items for each of ``users``: ``(item_ids, scores)``, each ``(len(users), k)``.

        ``exclude`` (users × items) removes e.g. already-seen items; ``items`` restricts candidates.
        """
        user_emb, item_emb = self.embeddings()
        return topk_scores(
            user_emb[np.asarray(users)],
            item_emb,
            k,
            exclude=None if exclude is None else exclude[np.asarray(users)],
            candidates=items,
        )

    def save(self, path: str | Path) -> None:
        user_emb, item_emb = self.embeddings()
        np.savez(Path(path), user_emb=user_emb, item_emb=item_emb, name=np.asarray(self.name))

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingModel:
        with np.load(Path(path), allow_pickle=False) as f:
            return EmbeddingModel(f["user_emb"], f["item_emb"], str(f["name"]))


class EmbeddingModel(Recommender):
    """A fitted model reduced to its embeddings (what ``Recommender.load`` returns)."""

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray, name: str = "embedding") -> None:
        self.user_emb = np.ascontiguousarray(user_emb, dtype=np.float32)
        self.item_emb = np.ascontiguousarray(item_emb, dtype=np.float32)
        self.name = name

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        raise TypeError("an EmbeddingModel is already fitted; train the original model class")

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return self.user_emb, self.item_emb
