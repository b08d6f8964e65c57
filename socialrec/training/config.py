"""Layered YAML configuration (after RecBole): defaults < config files (in order) < environment
(``SOCIALREC_DATA_ROOT``, ``MLFLOW_TRACKING_URI``) < ``--set`` overrides.

A config file may name another it builds on with ``extends: other.yaml`` (relative to itself), so an
experiment file can extend a dataset file. Every default is commented in configs/defaults.yaml.

The resolved config is validated as a whole before anything runs, by typed models that live next to
the code each section configures:

- ``dataset``: features/loader.py ``DatasetConfig``, plus the options the chosen source's loader
  reads (features/datasets/*.py, ``register_loader(name, options=...)``);
- ``split``: features/splits.py; ``graph``: features/graph.py; ``evaluation``:
  evaluation/config.py; ``index``: models/index.py;
- ``model``: ``name``, ``early_stop_metric`` and one section per registered model, each validated
  by that model's own config (models/registry.py; lightgcn's after it inherits socialgnn's keys);
- ``tracking``, ``serving`` and ``distributed``: here; ``uplift``: training/uplift_config.py;
  ``retrain`` and ``promotion``: training/loop_config.py.

An unknown key or a value of the wrong type is refused (:class:`ConfigError`) naming where it was
set (the file, ``--set key=value`` or the environment variable), its dotted key path, and for a
misspelt key the nearest valid one. Validation is strict: YAML types must match (YAML reads
``lr: 1e-3`` as text, so it is refused with a hint to write ``0.001``).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_core import ErrorDetails

from socialrec.evaluation.config import EvaluationConfig, check_metric_name
from socialrec.evaluation.objective import check_objective
from socialrec.features.graph import GraphConfig
from socialrec.features.loader import DatasetConfig, dataset_model
from socialrec.features.loader import data_root as loader_data_root
from socialrec.features.splits import SplitConfig
from socialrec.features.validation import did_you_mean
from socialrec.models.index import IndexConfig
from socialrec.models.registry import INHERITS, model_config, model_params, registered_models
from socialrec.training.loop_config import PromotionConfig, RetrainConfig
from socialrec.training.uplift_config import UpliftConfig

#: The default configs ship inside the package (configs/ at the checkout's root links here).
CONFIG_DIR = Path(str(resources.files("socialrec") / "configs"))
DEFAULTS = CONFIG_DIR / "defaults.yaml"
DEFAULTS_ORIGIN = "configs/defaults.yaml"

#: Config keys the environment sets, after the files and before ``--set``.
ENVIRONMENT = {
    ("dataset", "root"): "SOCIALREC_DATA_ROOT",
    ("tracking", "uri"): "MLFLOW_TRACKING_URI",
}

KeyPath = tuple[Any, ...]


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file/key."""


# --- the sections configured here, and the whole config -----------------------------------------


class AutoConfig(BaseModel):
    """``model.auto``: what ``model.name: auto`` trains and how it chooses (training/auto.py)."""

    model_config = ConfigDict(extra="forbid")

    candidates: list[str] = Field(min_length=1)  # model names, or model@file.yaml (file layered on)
    metric: str  # each endpoint's task is ranked by <task>.<metric> on validation

    @field_validator("metric")
    @classmethod
    def _metric(cls, name: str) -> str:
        return check_metric_name(name)


class ModelSection(BaseModel):
    """``model:``: which model to train (a registered one, or ``auto``: the best candidate per
    task), the metric early stopping watches, and a section per registered model (added by
    :func:`config_model`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    early_stop_metric: str
    auto: AutoConfig

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        known = [*registered_models(), "auto"]
        if name not in known:
            raise ValueError(f"unknown model {name!r}{did_you_mean(name, known)}; models: "
                             f"{', '.join(known)}")
        return name

    @field_validator("early_stop_metric")
    @classmethod
    def _metric(cls, name: str) -> str:
        return check_objective(name)  # push.ndcg@20, gmean(recommend.ndcg@20, push.ndcg@20), ...


#: the service's endpoints that can each follow their own registry alias (serving/service.py)
Endpoint = Literal["push_targets", "recommend", "share_partners"]


class TrackingConfig(BaseModel):
    """``tracking:``: the MLflow store and registry (training/tracking.py)."""

    model_config = ConfigDict(extra="forbid")

    uri: str
    artifact_root: str
    experiment: str
    registered_model: str
    alias: str
    aliases: dict[Endpoint, str] = {}  # an endpoint's own alias (default: alias)
    gate_metrics: list[str]

    @field_validator("experiment", "registered_model")
    @classmethod
    def _dataset_placeholder_only(cls, name: str) -> str:
        try:
            name.format(dataset="x")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"{name!r}: the only placeholder is {{dataset}}") from None
        return name


class ServingConfig(BaseModel):
    """``serving:``: what ``socialrec serve`` hands to the service (socialrec/cli.py)."""

    model_config = ConfigDict(extra="forbid")

    model: str  # registered model the service loads
    alias: str
    aliases: dict[Endpoint, str] = {}  # an endpoint's own alias (default: alias)
    event_store: str
    experiments: str | None  # A/B experiments file; null: no A/B routing


class DistributedConfig(BaseModel):
    """``distributed:``: how ``socialrec train --nproc N`` runs its ranks
    (training/distributed.py); a one-process run reads none of it."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(300.0, gt=0)
    checkpoint_dir: str = "checkpoints"
    checkpoint_every_steps: int | None = Field(50, ge=1)
    max_restarts: int = Field(3, ge=0)


class Config(BaseModel):
    """The whole resolved config; :func:`config_model` fills in the source's dataset options and
    the registered models' sections."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig
    split: SplitConfig
    graph: GraphConfig
    model: ModelSection
    evaluation: EvaluationConfig
    index: IndexConfig
    tracking: TrackingConfig
    serving: ServingConfig
    distributed: DistributedConfig
    uplift: UpliftConfig
    retrain: RetrainConfig
    promotion: PromotionConfig


@functools.cache
def _model_section() -> type[ModelSection]:
    sections: dict[str, Any] = {name: (model_config(name) | None, None)
                                for name in registered_models()}
    return create_model("ModelSection", __base__=ModelSection, **sections)


@functools.cache
def config_model(source: str) -> type[Config]:
    """The model a config whose ``dataset.source`` is ``source`` must validate as."""
    return create_model("Config", __base__=Config, dataset=(dataset_model(source), ...),
                        model=(_model_section(), ...))


# --- reading and layering, remembering where every key was set ----------------------------------


@dataclass
class Layer:
    """A config mapping and, for every key path in it, where that key was set (a file, ``--set
    key=value``, an environment variable)."""

    data: dict[str, Any]
    origins: dict[KeyPath, str] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any], where: str) -> Layer:
        return cls(data, {path: where for path in _key_paths(data)})

    def under(self, top: Layer) -> Layer:
        """``top`` merged over this layer (:func:`deep_merge`)."""
        kept = {p: w for p, w in self.origins.items() if not _replaced(self.data, top.data, p)}
        return Layer(deep_merge(self.data, top.data), {**kept, **top.origins})

    def set(self, path: KeyPath, value: Any, where: str) -> None:
        """Set ``path`` to ``value`` (creating missing sections) as ``where`` says."""
        node = self.data
        for depth, key in enumerate(path[:-1]):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {_dotted(path[:depth + 1])} is a value, not a section")
            self.origins.setdefault(path[:depth + 1], where)
        node[path[-1]] = value
        self.origins = {p: w for p, w in self.origins.items() if p[:len(path)] != path}
        self.origins.update({p: where for p in _key_paths(value, path)})

    def origin(self, path: KeyPath, default: str = "the resolved config") -> str:
        """Where the deepest key of ``path`` that is in this layer was set. For a section (a
        problem between its keys, such as two settings that exclude each other): where its keys
        were set, the defaults left out when something else set some."""
        for end in range(len(path), 0, -1):
            if path[:end] not in self.origins:
                continue
            children = [w for p, w in self.origins.items()
                        if len(p) == end + 1 and p[:end] == path[:end]]
            if end < len(path) or not children:
                return self.origins[path[:end]]
            chosen = [w for w in children if w != DEFAULTS_ORIGIN] or children
            return ", ".join(dict.fromkeys(chosen))
        return default


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """``data[name]`` when it is a mapping (anything else is for validation to refuse)."""
    section = data.get(name)
    return section if isinstance(section, Mapping) else {}


def _key_paths(value: Any, prefix: KeyPath = ()) -> Iterator[KeyPath]:
    """``prefix`` (when not empty) and the path of every key below it (lists are values)."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _key_paths(child, (*prefix, key))


def _replaced(base: dict[str, Any], top: dict[str, Any], path: KeyPath) -> bool:
    """Whether merging ``top`` over ``base`` replaces the value at ``path`` (or a section above
    it) instead of merging into it."""
    base_node: Any = base
    top_node: Any = top
    for key in path:
        if not isinstance(top_node, dict) or key not in top_node:
            return False
        if not (isinstance(top_node[key], dict) and isinstance(base_node.get(key), dict)):
            return True
        base_node, top_node = base_node[key], top_node[key]
    return False


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def read_layer(path: Path, seen: tuple[Path, ...] = ()) -> Layer:
    """A config file with what it ``extends:`` beneath it; every key's origin is the file (as
    named on the command line, or relative to the file that extends it) that sets it."""
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError(f"{resolved}: 'extends' loops back to itself")
    data = read_yaml(path)
    parent = data.pop("extends", None)
    # Relative dataset file paths are resolved against the file that names them.
    files = _section(data, "dataset").get("files")
    if isinstance(files, dict):
        for table in files.values():
            if (
                isinstance(table, dict)
                and "path" in table
                and not str(table["path"]).startswith("{root}")  # data-root paths stay as given
                and not Path(table["path"]).is_absolute()
            ):
                table["path"] = str((resolved.parent / table["path"]).resolve())
    layer = Layer.of(data, os.path.normpath(path))
    if parent is None:
        return layer
    return read_layer(path.parent / parent, (*seen, resolved)).under(layer)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``model.lr=0.01`` -> (["model", "lr"], 0.01); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def config_path(name: str | Path) -> Path:
    """``name`` as given when that file exists; else a config shipped with the package, by file
    name (``lastfm`` or ``lastfm.yaml`` or ``ablations/no_social.yaml``), so an installed wheel
    runs ``socialrec train --config lastfm`` without a checkout."""
    path = Path(name)
    if path.exists() or path.is_absolute():
        return path
    shipped = CONFIG_DIR / (path if path.suffix else path.with_suffix(".yaml"))
    return shipped if shipped.is_file() else path


def resolve(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> Layer:
    """The layered config, not yet validated, with the origin of every key."""
    layer = Layer.of(read_yaml(DEFAULTS), DEFAULTS_ORIGIN)
    for f in files:
        layer = layer.under(read_layer(config_path(f)))
    for path, variable in ENVIRONMENT.items():
        if value := os.environ.get(variable):
            layer.set(path, value, f"environment {variable}")
    for text in overrides:
        keys, value = parse_override(text)
        layer.set(tuple(keys), value, f"--set {text}")
    return layer


def load_config(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved config as a plain dict, validated (:func:`check`)."""
    layer = resolve(files, overrides)
    check(layer)
    return layer.data


def layer_over(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """``config`` with the file ``path`` (and what it ``extends:``) merged over it, validated: an
    ablation row of ``socialrec benchmark``. A problem the file brings names the file."""
    layer = Layer.of(config, "the config it is layered on").under(read_layer(config_path(path)))
    check(layer)
    return layer.data


# --- validation ----------------------------------------------------------------------------------


def check(config: Layer | dict[str, Any], default_origin: str = "the resolved config") -> None:
    """Refuse ``config`` (a :class:`Layer`, or a plain dict whose keys have no known origin) with
    one line per problem: origin, dotted key path, what is wrong (and the nearest valid key)."""
    layer = config if isinstance(config, Layer) else Layer(config)
    data = layer.data
    source = _section(data, "dataset").get("source", "synthetic")
    model = config_model(source if isinstance(source, str) else "synthetic")
    problems: list[tuple[KeyPath, str]] = []
    known = _known_keys(data, model, (), problems)
    inherited = _inherit_model_keys(known)
    try:
        model.model_validate(known, strict=True)
    except ValidationError as e:
        problems += _problems(e.errors(), known)
    if any(path == ("dataset", "source") for path, _ in problems):
        # an unknown source: its options cannot be told from typos
        problems = [(p, m) for p, m in problems if p[:1] != ("dataset",) or p[1:] == ("source",)]
    lines: list[str] = []
    for path, message in problems:
        parent = _inherited_from(path, inherited, data)
        if parent is not None:
            if (parent, message) in problems:
                continue  # reported where it is set
            path, message = parent, f"{message} (inherited by model.{path[1]})"
        line = f"{layer.origin(path, default_origin)}: {_dotted(path)}: {message}"
        if line not in lines:
            lines.append(line)
    if len(lines) == 1:
        raise ConfigError(lines[0])
    if lines:
        raise ConfigError(f"{len(lines)} problems:\n  " + "\n  ".join(lines))


def _known_keys(data: Any, annotation: Any, path: KeyPath, problems: list[tuple[KeyPath, str]]
                ) -> Any:
    """``data`` without the keys ``annotation`` (a pydantic model, or a dict / list / union of
    them) does not have; each key left out is a problem naming the nearest known key."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(data, Mapping):
            return data
        fields = annotation.model_fields
        kept = {}
        for key, value in data.items():
            if key in fields:
                kept[key] = _known_keys(value, fields[key].annotation, (*path, key), problems)
            else:
                hint = did_you_mean(str(key), fields) or f"; known keys: {', '.join(fields)}"
                problems.append(((*path, key), f"unknown key{hint}"))
        return kept
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and isinstance(data, Mapping):
        return {k: _known_keys(v, args[1], (*path, k), problems) for k, v in data.items()}
    if origin is list and isinstance(data, list):
        return [_known_keys(v, args[0], (*path, i), problems) for i, v in enumerate(data)]
    if origin in (typing.Union, types.UnionType):
        for member in map(_unwrap, args):
            if _shape_fits(member, data):
                return _known_keys(data, member, path, problems)
    return data


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _shape_fits(annotation: Any, data: Any) -> bool:
    if isinstance(data, Mapping):
        return get_origin(annotation) is dict or (
            isinstance(annotation, type) and issubclass(annotation, BaseModel))
    return isinstance(data, list) and get_origin(annotation) is list


def _inherit_model_keys(config: dict[str, Any]) -> dict[KeyPath, str]:
    """Give each model section that inherits (lightgcn) the keys it takes from its parent, so it
    is validated as it will be built; returns ``{("model", child): parent}``."""
    section = config.get("model")
    if not isinstance(section, dict):
        return {}
    inherited: dict[KeyPath, str] = {}
    for child, parent in INHERITS.items():
        if child not in section and section.get("name") != child:
            continue
        if not all(isinstance(section.get(name) or {}, dict) for name in (child, parent)):
            continue  # not sections: validation refuses them as they are
        section[child] = model_params(section, child)
        inherited["model", child] = parent
    return inherited


def _inherited_from(path: KeyPath, inherited: dict[KeyPath, str], data: dict[str, Any]
                    ) -> KeyPath | None:
    """The key path in the parent's section (socialgnn) of a key an inheriting model section
    (lightgcn) takes from it; ``None`` for a key the section sets itself."""
    if len(path) < 3 or path[:2] not in inherited or path[2] in data["model"].get(path[1], {}):
        return None
    return ("model", inherited[path[:2]], *path[2:])


def _problems(errors: list[ErrorDetails], data: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """One problem per key path, from pydantic's errors (the messages of a value that fits no
    member of a union are joined)."""
    by_path: dict[KeyPath, list[ErrorDetails]] = {}
    for err in errors:
        by_path.setdefault(_data_path(err, data), []).append(err)
    problems = []
    for path, errs in by_path.items():
        expected = [_expected(e) for e in errs if e["type"] not in _OWN_MESSAGE]
        messages = [_own_message(e) for e in errs if e["type"] in _OWN_MESSAGE]
        if expected:
            value = errs[0].get("input")
            messages.append(f"expected {' or '.join(expected)}, got {value!r}"
                            + _hint(errs[0], value))
        problems.append((path, "; ".join(messages)))
    return problems


_OWN_MESSAGE = {"missing", "value_error", "assertion_error"}


def _data_path(err: ErrorDetails, data: Any) -> KeyPath:
    """The key path of ``err`` in ``data``: pydantic's location without the union members'
    names it inserts."""
    path: list[Any] = []
    node = data
    for i, part in enumerate(err["loc"]):
        in_data = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node))
        if in_data:
            node = node[part]
        elif not (err["type"] == "missing" and i == len(err["loc"]) - 1):
            continue
        path.append(part)
    return tuple(path)


def _own_message(err: ErrorDetails) -> str:
    if err["type"] == "missing":
        return "missing (required)"
    return re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])


def _expected(err: ErrorDetails) -> str:
    if err["type"] in ("model_type", "model_attributes_type"):
        return "a section (key: value mapping)"
    text = err["msg"].removeprefix("Input should be ")
    if text.startswith(("greater", "less")):
        text = "a value " + text
    return text


def _hint(err: ErrorDetails, value: Any) -> str:
    if err["type"] == "literal_error" and isinstance(value, str):
        return did_you_mean(value, re.findall(r"'([^']*)'", err.get("ctx", {})["expected"]))
    if err["type"] in ("float_type", "int_type") and isinstance(value, str):
        try:
            number = repr(float(value))
        except ValueError:
            return ""
        mantissa, e, exponent = number.partition("e")
        yaml_number = mantissa + (".0" if e and "." not in mantissa else "") + e + exponent
        return f" (YAML reads {value} as text; write {yaml_number})"
    return ""


def _dotted(path: KeyPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


# --- what the rest of the code reads from a config ----------------------------------------------


def data_root(config: dict[str, Any]) -> Path:
    """Where real datasets live (features/loader.py ``data_root``)."""
    return loader_data_root(config["dataset"])


def format_names(config: dict[str, Any]) -> dict[str, str]:
    """Experiment / registered-model names with ``{dataset}`` filled in."""
    name = config["dataset"]["name"]
    return {
        "experiment": config["tracking"]["experiment"].format(dataset=name),
        "registered_model": config["tracking"]["registered_model"].format(dataset=name),
    }
