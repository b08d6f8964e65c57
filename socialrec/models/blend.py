"""A blend of two models' scores, served as one inner product.

``score(u, i) = (1 − w) · s₁(u, i) / σ₁ + w · s₂(u, i) / σ₂`` where ``s_k`` is model k's served
score and ``σ_k`` the spread (standard deviation) of its scores over random (user, item) pairs, so
that ``w`` weighs two models whose scores live on different scales. The blend is exact and stays a
single maximum-inner-product search: users are ``[(1 − w)·U₁/σ₁, w·U₂/σ₂]``, items ``[I₁, I₂]``.

Why (issue 14, results/lastfm.md): the softmax GNN ranks items for a user well but its scores are
normalised per user, while ALS's global squared loss makes scores comparable across users — what a
push (item → users) needs. Blending the two puts the GNN ahead of a tuned ALS on push as well as on
recommend; the GNN's own push remedies (models/socialgnn.py ``calibration``, ``push_weight``)
measured less. ``w`` is chosen on validation by the objective the pipeline's validator reads
(``model.early_stop_metric``, push and recommend by default) among ``weights``; 0 and 1 are
allowed, so the blend never does worse on validation than either model alone.
"""

from __future__ import annotations

import logging
from typing import Any, Self

import numpy as np
from pydantic import Field, model_validator

from socialrec.features.graph import GraphData
from socialrec.models.base import Recommender, Validator
from socialrec.models.registry import ModelConfig, make_model, model_config, register_model

log = logging.getLogger(__name__)


class BlendConfig(ModelConfig):
    models: list[str] = Field(
        ["socialgnn", "als"], min_length=2, max_length=2,
        description="the two models blended, each fitted from its own section of model:")
    weight: float | None = Field(
        None, ge=0.0, le=1.0, description="weight w of the second model's scaled scores; null: "
                                          "chosen on validation among weights")
    weights: list[float] = Field(
        [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1,
        description="the weights tried on validation (the objective of model.early_stop_metric)")
    pairs: int = Field(100_000, gt=0, description="random (user, item) pairs that measure each "
                                                  "model's score spread")
    seed: int = Field(2026, description="seed of both models (where they take one) and of the "
                                        "pairs")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.models[0] == self.models[1] or "blend" in self.models:
            raise ValueError(f"models must be two different models other than blend, got "
                             f"{list(self.models)}")
        if any(not 0.0 <= w <= 1.0 for w in self.weights):
            raise ValueError(f"weights must lie in [0, 1], got {self.weights}")
        return self


def score_spread(user_emb: np.ndarray, item_emb: np.ndarray, pairs: int, seed: int) -> float:
    """The standard deviation of ``user · item`` over ``pairs`` random (user, item) pairs (1 when
    the scores do not vary)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, len(user_emb), pairs)
    items = rng.integers(0, len(item_emb), pairs)
    spread = float(np.std(np.einsum("ij,ij->i", user_emb[users], item_emb[items])))
    return spread if spread > 0 else 1.0


def blended(parts: list[tuple[np.ndarray, np.ndarray]], spreads: list[float], weight: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """The served embeddings of the blend of two ``(user_emb, item_emb)`` with weight ``weight``."""
    (u1, i1), (u2, i2) = parts
    users = np.hstack([u1 * ((1.0 - weight) / spreads[0]), u2 * (weight / spreads[1])])
    items = np.hstack([i1, i2])
    return users.astype(np.float32), items.astype(np.float32)


@register_model("blend", BlendConfig)
class BlendRecommender(Recommender):
    """Two registered models fitted on the same data, their scores blended (module docstring).
    Hyper-parameters: :class:`BlendConfig`; each part's come from its own section of the config's
    ``model:`` (``make_model`` passes the whole section to a composite model)."""

    name = "blend"
    early_stopping = True  # takes the validator: its parts stop early on it, and it picks w
    composite = True

    def __init__(self, config: BlendConfig | None = None, validator: Validator | None = None,
                 model_section: dict[str, Any] | None = None, **overrides: Any) -> None:
        self.config = BlendConfig.with_overrides(config, overrides)
        self.validator = validator
        self.model_section = dict(model_section or {})
        self.parts: list[Recommender] = []
        self.spreads: list[float] = []
        self.weight: float | None = None
        self.weight_scores: dict[float, float] = {}  # validation objective of each weight tried
        self._emb: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def history(self) -> Any:
        """The first part's fit history (epochs, seconds to the best one), if it has one."""
        return next((p.history for p in self.parts if hasattr(p, "history")), None)

    def _part_section(self, name: str) -> dict[str, Any]:
        section = dict(self.model_section)
        params = dict(section.get(name) or {})
        if "seed" in model_config(name).model_fields:
            params["seed"] = self.config.seed
        section[name] = params
        return section

    def fit(self, data: GraphData, show_progress: bool = True) -> Self:
        c = self.config
        self.parts = [make_model(name, self._part_section(name), validator=self.validator)
                      .fit(data, show_progress=show_progress) for name in c.models]
        embeddings = [part.embeddings() for part in self.parts]
        self.spreads = [score_spread(u, i, c.pairs, c.seed) for u, i in embeddings]
        candidates = [c.weight] if c.weight is not None else list(dict.fromkeys(c.weights))
        if self.validator is None or len(candidates) == 1:
            self.weight = candidates[0] if c.weight is not None else 0.5
        else:
            self.weight_scores = {w: self.validator(*blended(embeddings, self.spreads, w))
                                  for w in candidates}
            self.weight = max(self.weight_scores, key=lambda w: self.weight_scores[w])
            log.info("blend weight %.2f (validation %s)", self.weight, self.weight_scores)
        self._emb = blended(embeddings, self.spreads, self.weight)
        return self

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        if self._emb is None:
            raise RuntimeError("blend is not fitted")
        return self._emb
