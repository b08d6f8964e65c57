"""Model names in configs -> model classes, with each model's own section of ``model:``."""

from __future__ import annotations

from typing import Any

from socialrec.models.base import Recommender
from socialrec.models.baselines import make_model as make_baseline
from socialrec.models.socialgnn import LightGCNRecommender, SocialGNNRecommender, Validator

GNN_MODELS = {"socialgnn": SocialGNNRecommender, "lightgcn": LightGCNRecommender}


def model_params(model_config: dict[str, Any], name: str) -> dict[str, Any]:
    """The hyper-parameters of ``name``; lightgcn inherits what it does not set from socialgnn."""
    params = dict(model_config.get(name) or {})
    if name == "lightgcn":
        params = {**(model_config.get("socialgnn") or {}), **params}
    return params


def make_model(
    name: str, model_config: dict[str, Any], validator: Validator | None = None
) -> Recommender:
    params = model_params(model_config, name)
    if name in GNN_MODELS:
        return GNN_MODELS[name](**params, validator=validator)
    return make_baseline(name, params)
