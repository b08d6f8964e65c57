"""Load a :class:`~socialrec.features.tables.Dataset` from the ``dataset:`` section of a config.

``source`` picks how:

- ``synthetic``: the seeded world of features/synthetic.py (``dataset.synthetic`` gives its sizes);
- ``files``: any interactions file (plus optional social, shares, items, users files) mapped onto
  the canonical tables by configuration alone; configs/generic_csv.yaml is a commented example;
- any other name: a loader in features/datasets/ registered with :func:`register_loader`.

A ``files`` table is ``{path, format, sep, header, encoding, columns, constants, on_error}``:
``columns`` maps canonical names to the source's column names (or 0-based positions when
``header: false``; a canonical column the source already has under its own name needs no entry),
``constants`` gives canonical columns one value for every row (``event: purchase``), ``on_error``
is ``refuse`` (default) or ``skip`` (see features/validation.py). A path is absolute, starts with
``{root}`` (the data root), or is relative to the config file's directory.

Text files are read as strings and converted column by column, so that an error names the line it
is on (line 1 is the header). Quoted fields spanning several lines would shift those numbers; the
formats here have none.
"""

from __future__ import annotations

import csv
import functools
import importlib
import os
import pkgutil
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, create_model, field_validator

from socialrec.features.paths import project_dir
from socialrec.features.synthetic import SyntheticConfig, generate
from socialrec.features.tables import SCHEMAS, Dataset, ValidationReport, empty
from socialrec.features.validation import (
    DataError,
    Lines,
    check_columns,
    did_you_mean,
    validate_table,
)

DATA_ROOT_ENV = "SOCIALREC_DATA_ROOT"

#: Loaders of named real datasets: source name -> f(dataset config, data root) -> Dataset.
DATASET_LOADERS: dict[str, Callable[[dict, Path], Dataset]] = {}

TABLES = ("interactions", "social", "shares", "items", "users")
_SEPARATORS = {"csv": ",", "tsv": "\t"}
_SUFFIX_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
}
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".zip"}


Loader = Callable[[dict, Path], Dataset]
OnError = Literal["refuse", "skip"]


class SourceOptions(BaseModel):
    """Base of the options a real-dataset loader reads from the ``dataset:`` section besides the
    common keys (:class:`DatasetConfig`); each loader declares its own with :func:`register_loader`,
    so a key the chosen source does not read is refused when the config is loaded."""

    model_config = ConfigDict(extra="forbid")


#: Options model of each registered source (filled by :func:`register_loader`).
SOURCE_OPTIONS: dict[str, type[SourceOptions]] = {}


def register_loader(
    name: str, options: type[SourceOptions] = SourceOptions,
) -> Callable[[Loader], Loader]:
    """Register a real-dataset loader under ``dataset.source: <name>``; ``options`` are the
    ``dataset:`` keys it reads beyond the common ones (default: none).

    >>> class MyOptions(SourceOptions):  # doctest: +SKIP
    ...     on_error: OnError = "refuse"
    >>> @register_loader("my_dataset", options=MyOptions)  # doctest: +SKIP
    ... def load(cfg: dict, root: Path) -> Dataset: ...
    """

    def decorate(fn: Loader) -> Loader:
        if name in DATASET_LOADERS and DATASET_LOADERS[name] is not fn:
            raise ValueError(f"a dataset loader named {name!r} is already registered")
        DATASET_LOADERS[name] = fn
        SOURCE_OPTIONS[name] = options
        return fn

    return decorate


def data_root(cfg: dict) -> Path:
    """Where real datasets live: env SOCIALREC_DATA_ROOT, else ``dataset.root`` (relative to the
    project directory, features/paths.py)."""
    env = os.environ.get(DATA_ROOT_ENV)
    root = Path(env) if env else Path(cfg.get("root", "../shared/datasets")).expanduser()
    return root if root.is_absolute() else (project_dir() / root).resolve()


def load_dataset(cfg: dict, root: Path | None = None, config_dir: Path | None = None) -> Dataset:
    """The dataset the ``dataset:`` config section ``cfg`` describes.

    ``root`` is the data root (default: :func:`data_root`); ``config_dir`` the directory of the
    config file, against which relative ``files`` paths resolve (default: the current directory).
    """
    source = cfg.get("source", "synthetic")
    root = Path(root) if root is not None else data_root(cfg)
    if source == "synthetic":
        params = dict(cfg.get("synthetic") or {})
        try:
            dataset = generate(**params)
        except TypeError as e:
            raise ValueError(f"dataset.synthetic: {e}") from e
        dataset.name = cfg.get("name") or dataset.name
        return dataset
    if source == "files":
        return load_files(cfg, root, Path(config_dir) if config_dir is not None else Path.cwd())
    return get_loader(source)(cfg, root)


def get_loader(source: str) -> Loader:
    """The registered loader for ``source``, importing features/datasets/ to fill the registry."""
    if source not in DATASET_LOADERS:
        package = importlib.import_module("socialrec.features.datasets")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    if source not in DATASET_LOADERS:
        known = ", ".join(["synthetic", "files", *sorted(DATASET_LOADERS)])
        raise ValueError(f"dataset.source: unknown source {source!r}; known: {known}")
    return DATASET_LOADERS[source]


class TableSpec(BaseModel):
    """One table of ``dataset.files`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    format: Literal["csv", "tsv", "parquet"] | None = None
    sep: str | None = None
    header: bool = True
    encoding: str = "utf-8"
    columns: dict[str, str | int] = {}
    constants: dict[str, Any] = {}
    on_error: OnError = "refuse"


class FilesConfig(BaseModel):
    """``dataset.files``: one :class:`TableSpec` per canonical table (:data:`TABLES`)."""

    model_config = ConfigDict(extra="forbid")

    interactions: TableSpec | None = None  # required when source = files (load_files says so)
    social: TableSpec | None = None
    shares: TableSpec | None = None
    items: TableSpec | None = None
    users: TableSpec | None = None


class DatasetConfig(BaseModel):
    """The keys of the ``dataset:`` section every source shares (configs/defaults.yaml); a real
    source adds its own options (:func:`dataset_model`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: str = "synthetic"
    root: str = "../shared/datasets"
    synthetic: SyntheticConfig = SyntheticConfig()
    files: FilesConfig = FilesConfig()
    social_symmetric: bool = True  # source = files: ties are mutual; false: directed

    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str) -> str:
        if source in ("synthetic", "files"):
            return source
        try:
            get_loader(source)
        except ValueError:
            known = ["synthetic", "files", *sorted(DATASET_LOADERS)]
            raise ValueError(f"unknown source {source!r}{did_you_mean(source, known)}; known: "
                             f"{', '.join(known)}") from None
        return source


@functools.cache
def dataset_model(source: str) -> type[DatasetConfig]:
    """What the ``dataset:`` section may hold for ``source``: the common keys and the options its
    loader reads (:func:`register_loader`). An unknown source gets the common keys only (their
    validation then refuses the source)."""
    if source in ("synthetic", "files"):
        return DatasetConfig
    try:
        get_loader(source)
    except ValueError:
        return DatasetConfig
    options = SOURCE_OPTIONS.get(source, SourceOptions)
    if options is SourceOptions:
        return DatasetConfig
    # pydantic's stub wants every base to be a DatasetConfig; the options are a mix-in
    bases: Any = (DatasetConfig, options)
    return create_model(f"DatasetConfig_{source}", __base__=bases)


def load_files(cfg: dict, root: Path, config_dir: Path) -> Dataset:
    """``source: files``: read every table ``dataset.files`` lists (interactions is required)."""
    files = dict(cfg.get("files") or {})
    symmetric = bool(cfg.get("social_symmetric", files.pop("social_symmetric", True)))
    unknown = sorted(set(files) - set(TABLES))
    if unknown:
        raise ValueError(f"dataset.files: unknown table(s) {', '.join(unknown)}; "
                         f"tables: {', '.join(TABLES)}")
    if "interactions" not in files:
        raise ValueError("dataset.files: an 'interactions' table is required")
    report = ValidationReport()
    frames: dict[str, pd.DataFrame] = {}
    for table, raw_spec in files.items():
        try:
            spec = TableSpec.model_validate(raw_spec)
        except ValidationError as e:
            problems = "; ".join(f"dataset.files.{table}.{'.'.join(map(str, err['loc']))}: "
                                 f"{err['msg'].lower()}" for err in e.errors())
            raise ValueError(problems) from None
        frames[table] = read_table(spec, table, root, config_dir, report)
    return Dataset(
        name=cfg.get("name") or "files",
        interactions=frames["interactions"],
        social=frames.get("social", empty("social")),
        shares=frames.get("shares", empty("shares")),
        items=frames.get("items"),
        users=frames.get("users"),
        social_symmetric=symmetric,
        report=report,
    )


def resolve_path(path: str, root: Path, config_dir: Path) -> Path:
    """``{root}/...`` is under the data root; other relative paths are under ``config_dir``."""
    if "{root}" in path:
        # what precedes {root} is dropped: a config reader may have prefixed the file's directory
        return Path(root) / path.split("{root}", 1)[1].lstrip("/\\")
    p = Path(path).expanduser()
    return p if p.is_absolute() else config_dir / p


def read_table(
    spec: TableSpec, table: str, root: Path, config_dir: Path, report: ValidationReport,
) -> pd.DataFrame:
    """Read one source file, map its columns and return the validated canonical frame."""
    path = resolve_path(spec.path, root, config_dir)
    if not path.exists():
        raise FileNotFoundError(f"dataset.files.{table}.path: no such file: {path}")
    fmt = spec.format or _format_of(path, table)
    if path.is_dir() and fmt != "parquet":
        raise ValueError(f"dataset.files.{table}.path: {path} is a folder; a folder is read as "
                         f"Parquet parts (format: parquet)")
    if fmt == "parquet":
        raw, lines = pd.read_parquet(path), Lines(first=1, kind="row")
    else:
        raw, lines = _read_text(path, spec, fmt, report)
    mapped = _map_columns(raw, table, spec, path.name, lines)
    return validate_table(mapped, table, file=path.name, report=report, on_error=spec.on_error,
                          lines=lines)


def _format_of(path: Path, table: str) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSION_SUFFIXES]
    fmt = _SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise ValueError(f"dataset.files.{table}: cannot tell the format of {path.name} from its "
                         f"suffix; set format: csv, tsv or parquet")
    return fmt


def _read_text(
    path: Path, spec: TableSpec, fmt: str, report: ValidationReport,
) -> tuple[pd.DataFrame, Lines]:
    """All cells as strings; blank lines and (skip mode) lines with the wrong number of fields are
    counted in ``report`` and left out, remembering where they were for line numbers."""
    sep = spec.sep or _SEPARATORS[fmt]
    options: dict[str, Any] = {
        "sep": sep, "header": 0 if spec.header else None, "dtype": str, "encoding": spec.encoding,
        "keep_default_na": False, "na_filter": False, "skip_blank_lines": False,
        "on_bad_lines": "error" if spec.on_error == "refuse" else "warn",
        # TSV has no quoting: a '"' inside a name is just a character.
        "quoting": csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            raw = pd.read_csv(path, **options)
        except pd.errors.ParserError as e:
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
            if not m:
                raise DataError(path.name, None, None, f"a {fmt.upper()} file", got=str(e)) from e
            raise DataError(path.name, int(m[2]), None, f"{m[1]} fields separated by {sep!r}",
                            got=f"{m[3]} fields") from e
        except pd.errors.EmptyDataError as e:
            raise DataError(path.name, 1, None, "a header line" if spec.header else "data",
                            got="an empty file") from e
        except UnicodeDecodeError as e:
            raise DataError(path.name, None, None, f"text in {spec.encoding}", got=str(e)) from e
    lines = Lines(first=2 if spec.header else 1)
    for warning in caught:
        m = re.search(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)",
                      str(warning.message))
        if m:
            lines.skipped.append(int(m[1]))
            report.add(path.name, "wrong number of fields", 1,
                       f"{path.name}, line {m[1]}: expected {m[2]} fields separated by {sep!r}, "
                       f"got {m[3]} fields")
    if spec.header:
        raw.columns = [str(c).strip() for c in raw.columns]
    blank = (raw == "").all(axis=1).to_numpy() if raw.shape[1] else raw.index.to_numpy() < 0
    if blank.any():
        report.add(path.name, "blank line (ignored)", int(blank.sum()))
        raw = raw[~blank]  # the index keeps each row's position, so line numbers stay right
    return raw, lines


def _map_columns(
    raw: pd.DataFrame, table: str, spec: TableSpec, file: str, lines: Lines,
) -> pd.DataFrame:
    """Canonical columns from the source's columns and the constants."""
    schema = SCHEMAS[table]
    side_info = table in ("items", "users")
    for canon in [*spec.columns, *spec.constants]:
        if canon not in schema and not side_info:
            raise ValueError(f"dataset.files.{table}: {canon!r} is not a column of {table}; "
                             f"columns: {', '.join(schema)}")
    both = set(spec.columns) & set(spec.constants)
    if both:
        raise ValueError(f"dataset.files.{table}: {', '.join(sorted(both))} given both as a column "
                         "and as a constant")
    header_line = 1 if spec.header and lines.kind == "line" else None
    found = list(raw.columns)
    out: dict[str, pd.Series] = {}
    for canon, source in spec.columns.items():
        if source not in raw.columns:
            raise DataError(file, header_line, str(source), f"a column {source!r} (mapped to "
                            f"{table} '{canon}')", found=found)
        out[canon] = raw[source]
    used = {str(s) for s in spec.columns.values()}
    for col in raw.columns:
        is_own = col in schema and col not in out
        if (is_own or (side_info and str(col) not in used)) and col not in spec.constants:
            out.setdefault(str(col), raw[col])
    for canon, value in spec.constants.items():
        out[canon] = pd.Series(str(value), index=raw.index, dtype=object)
    mapped = pd.DataFrame(out, index=raw.index)
    check_columns(list(mapped.columns), table, file, header_line, found=found)
    return mapped
