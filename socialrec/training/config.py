"""Layered YAML configuration (after RecBole): defaults < config files (in order) < environment
(``SOCIALREC_DATA_ROOT``, ``MLFLOW_TRACKING_URI``) < ``--set`` overrides.

A config file may name another it builds on with ``extends: other.yaml`` (relative to itself), so an
experiment file can extend a dataset file. Every default is commented in configs/defaults.yaml.
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from socialrec.features.loader import data_root as loader_data_root

#: The default configs ship inside the package (configs/ at the checkout's root links here).
CONFIG_DIR = Path(str(resources.files("socialrec") / "configs"))
DEFAULTS = CONFIG_DIR / "defaults.yaml"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file/key."""


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


def _read_layer(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    data = read_yaml(path)
    parent = data.pop("extends", None)
    # Relative dataset file paths are resolved against the file that names them.
    files = data.get("dataset", {}).get("files")
    if isinstance(files, dict):
        for table in files.values():
            if (
                isinstance(table, dict)
                and "path" in table
                and not str(table["path"]).startswith("{root}")  # data-root paths stay as given
                and not Path(table["path"]).is_absolute()
            ):
                table["path"] = str((path.parent / table["path"]).resolve())
    if parent is None:
        return data
    return deep_merge(_read_layer(path.parent / parent, (*seen, path)), data)


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


def load_config(files: list[str | Path] = (), overrides: list[str] = ()) -> dict[str, Any]:
    """Resolve the layered config. Unknown top-level sections or keys are refused (typos)."""
    config = read_yaml(DEFAULTS)
    for f in files:
        layer = _read_layer(Path(f))
        _check_keys(config, layer, str(f))
        config = deep_merge(config, layer)
    _apply_environment(config)
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ConfigError(f"override {text!r}: no section {k!r}")
            node = node[k]
        if keys[-1] not in node and keys[0] not in ("model", "dataset"):
            raise ConfigError(f"override {text!r}: unknown key {'.'.join(keys)!r}")
        node[keys[-1]] = value
    return config


#: Sections whose keys are free-form (model hyper-parameters differ per model; dataset sources
#: bring their own options; event weights name event kinds).
_OPEN_SECTIONS = {"model", "dataset", "graph", "split", "evaluation"}


def _check_keys(base: dict[str, Any], layer: dict[str, Any], where: str, path: str = "") -> None:
    for key, value in layer.items():
        dotted = f"{path}{key}"
        if key not in base:
            if path == "" or path.split(".")[0] not in _OPEN_SECTIONS:
                raise ConfigError(f"{where}: unknown key {dotted!r} (see configs/defaults.yaml)")
            continue
        if isinstance(value, dict) and isinstance(base[key], dict):
            _check_keys(base[key], value, where, dotted + ".")


def _apply_environment(config: dict[str, Any]) -> None:
    if root := os.environ.get("SOCIALREC_DATA_ROOT"):
        config["dataset"]["root"] = root
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        config["tracking"]["uri"] = uri


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
