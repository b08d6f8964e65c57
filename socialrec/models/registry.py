"""The one model registry: a config name -> its :class:`Recommender` class and the typed model of
its hyper-parameters.

Every model module registers its class together with its hyper-parameters::

    @register_model("als", ALSConfig)
    class ALSModel(Recommender): ...

and ``make_model(name, config["model"])`` builds one from the ``model:`` section of a config. A
registered class takes its config as first argument (``ALSModel(config)``); one whose
``early_stopping`` is set also takes ``validator=``.

The model modules are imported on the first lookup, not when this module is: importing the
registry costs no torch import.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from socialrec.models.base import Recommender, Validator

#: the modules whose classes register themselves here (imported on the first lookup)
MODEL_MODULES = ("socialrec.models.baselines", "socialrec.models.socialgnn",
                 "socialrec.models.blend")

#: a model that takes the keys it does not set from another one's section (``model_params``)
INHERITS = {"lightgcn": "socialgnn"}


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``unknown <kind> 'x' (did you mean 'y'?)``, or the known names when none is close."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    return f"unknown {kind} {name!r} ({hint})"


class ModelConfig(BaseModel):
    """Base of every model's hyper-parameters: immutable, and an unknown key is refused with the
    nearest known one (a misspelt key silently training with its default costs a whole run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError("; ".join(unknown_name("parameter", key, cls.model_fields)
                                           for key in unknown))
        return data

    @classmethod
    def with_overrides(cls, config: Self | None, overrides: Mapping[str, Any]) -> Self:
        """``config`` (default: all defaults) with ``overrides`` applied, validated again."""
        if config is None:
            return cls.model_validate(overrides)
        if not overrides:
            return config
        return cls.model_validate({**dict(config), **overrides})


def errors_in_words(error: ValidationError) -> str:
    """One line per problem, ``field: what is wrong`` (pydantic's own text spans several lines)."""
    lines = []
    for e in error.errors():
        where = ".".join(str(part) for part in e["loc"])
        what = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {what}" if where else what)
    return "; ".join(lines)


@dataclass(frozen=True)
class _Entry:
    model: type[Recommender]
    config: type[ModelConfig]


_MODELS: dict[str, _Entry] = {}
M = TypeVar("M", bound=type[Recommender])


def register_model(name: str, config: type[ModelConfig]) -> Callable[[M], M]:
    """Class decorator: ``name`` in configs builds this class from a ``config`` instance."""

    def add(model: M) -> M:
        known = _MODELS.get(name)
        if known is not None and known.model is not model:
            raise ValueError(f"model name {name!r} is already registered to {known.model}")
        _MODELS[name] = _Entry(model, config)
        return model

    return add


def _entry(name: str) -> _Entry:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    if name not in _MODELS:
        raise ValueError(unknown_name("model", name, _MODELS))
    return _MODELS[name]


def registered_models() -> list[str]:
    """Every model name a config may use."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return sorted(_MODELS)


def model_config(name: str) -> type[ModelConfig]:
    """The hyper-parameter model of ``name`` (what its section of ``model:`` must validate as)."""
    return _entry(name).config


def model_class(name: str) -> type[Recommender]:
    return _entry(name).model


def model_params(model_section: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The hyper-parameters of ``name`` as its config section sets them; lightgcn takes what it
    does not set from socialgnn's section (:data:`INHERITS`)."""
    params = dict(model_section.get(name) or {})
    if name in INHERITS:
        params = {**(model_section.get(INHERITS[name]) or {}), **params}
    return params


def make_model(name: str, model_section: Mapping[str, Any], validator: Validator | None = None
               ) -> Recommender:
    """The model ``name``, built from its section of ``model_section`` (a config's ``model:``);
    ``validator`` is given to a model that stops early on it and ignored by the others."""
    entry = _entry(name)
    try:
        config = entry.config.model_validate(model_params(model_section, name))
    except ValidationError as e:
        raise ValueError(f"bad parameters for model {name!r}: {errors_in_words(e)}") from e
    # every registered class takes its config first (see the module docstring)
    build: Callable[..., Recommender] = entry.model
    extra: dict[str, Any] = {"validator": validator} if entry.model.early_stopping else {}
    if entry.model.composite:  # built from other models' sections (models/blend.py)
        extra["model_section"] = dict(model_section)
    return build(config, **extra)
