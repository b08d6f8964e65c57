"""The feature tables built by Spark (PySpark, the optional extra ``.[spark]``), for event logs
past what one machine's pandas holds. The pandas path (features/loader.py ``files``,
features/splits.py, features/tie_strength.py) stays the default; this job computes the same
things with Spark DataFrames and writes them as Parquet that ``socialrec train`` reads
(``dataset.source: tables``, features/datasets/tables.py):

    <out>/tables/{interactions,social,shares,items,users}.parquet   the canonical tables
    <out>/split/{train,valid,test,social,train_shares,valid_shares,test_shares}.parquet
    <out>/tie_strength.parquet     src, dst, weight: the training-period tie of every social edge
    <out>/manifest.json            what was built from what (and the split's protocol)

Input: the ``dataset.files`` mapping of the generic loader (CSV / TSV / Parquet files, ``columns``,
``constants``, ``on_error``). Values are converted as features/validation.py converts them
(trimmed ids, lower-case event kinds, integer timestamps, numbers, booleans; exact duplicate rows
dropped); a file whose columns do not match the mapping is refused naming the file and the
column, and a bad value under ``on_error: refuse`` naming the file, the column and the value.
Row order is the files' order, so that ids are numbered as the pandas path numbers them.

Splits: ``temporal`` (one global time cut, the quantiles computed exactly from the per-second
histogram of event times) — the split a platform cuts its logs by. ``random_ratio`` draws one
permutation over every pair with numpy's generator, which no distributed job reproduces; it is
refused here, as is ``leave_last_out`` (not written yet).

Tie strength: :func:`~socialrec.features.tie_strength.graph_tie_strength`'s formula, each component
a join (recent shares, joins, Adamic–Adar over common friends, co-interacted items).

Nothing is half-written: everything goes to a temporary folder beside ``out``, renamed into place
once complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from socialrec.features.loader import TABLES, TableSpec, _format_of, resolve_path
from socialrec.features.splits import TEST, TRAIN, VALID, SplitConfig, _ratios
from socialrec.features.tables import EVENT_TYPES, SCHEMAS
from socialrec.features.validation import _BOOL_DEFAULTS, _FALSE, _TRUE, ID_COLUMNS, DataError

if TYPE_CHECKING:  # pyspark is an optional extra
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

ROW = "_row"  # a row's position in its file (files are read in order)
SPARK_TYPES = {"string": "string", "Int64": "bigint", "float64": "double", "bool": "boolean"}
OPTIONAL_DEFAULTS = {"weight": 1.0, "value": 1.0, "joined": False, "push_opt_in": True}


def spark_session(master: str = "local[2]", memory: str = "4g", partitions: int = 8,
                  local_dir: str | None = None) -> SparkSession:
    """A Spark session for the job: ``local[N]`` here, a cluster's master URL elsewhere
    (``spark-submit`` sets it too); ``partitions``: of every shuffle (joins, groupings)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:  # pragma: no cover - the extra is part of dev
        raise RuntimeError("the Spark job needs PySpark: pip install 'socialrec[spark]'") from err
    builder = (SparkSession.builder.master(master).appName("socialrec-tables")
               .config("spark.driver.memory", memory)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", str(partitions))
               .config("spark.ui.enabled", "false"))
    if local_dir:
        builder = builder.config("spark.local.dir", local_dir)
    return builder.getOrCreate()


# --- reading the files as canonical tables ------------------------------------------------------


def read_table(spark: SparkSession, spec: TableSpec, table: str, root: Path,
               config_dir: Path) -> DataFrame:
    """One source file mapped and converted to the canonical columns of ``table`` (plus its
    position, :data:`ROW`)."""
    from pyspark.sql import functions as F

    path = resolve_path(spec.path, root, config_dir)
    if not path.exists():
        raise FileNotFoundError(f"dataset.files.{table}.path: no such file: {path}")
    fmt = spec.format or _format_of(path, table)
    if path.is_dir() and fmt != "parquet":
        raise ValueError(f"dataset.files.{table}.path: {path} is a folder; a folder is read as "
                         f"Parquet parts (format: parquet)")
    if fmt == "parquet":
        raw = spark.read.parquet(str(path))
        header_line = None
    else:
        sep = spec.sep or {"csv": ",", "tsv": "\t"}[fmt]
        raw = (spark.read.option("header", spec.header).option("sep", sep)
               .option("encoding", spec.encoding).option("inferSchema", False)
               .option("quote", "" if sep == "\t" else '"').csv(str(path)))
        if not spec.header:  # columns are named by position, as the mapping names them
            raw = raw.toDF(*[str(i) for i in range(len(raw.columns))])
        header_line = 1 if spec.header else None
    raw = raw.withColumn(ROW, F.monotonically_increasing_id())  # increasing in file order
    schema = SCHEMAS[table]
    found = [c for c in raw.columns if c != ROW]
    mapped: dict[str, Column] = {}
    for canon, source in spec.columns.items():
        if str(source) not in found:
            raise DataError(path.name, header_line, str(source),
                            f"a column {source!r} (mapped to {table} '{canon}')", found=found)
        mapped[canon] = F.col(f"`{source}`")
    used = {str(s) for s in spec.columns.values()}
    side_info = table in ("items", "users")
    for col in found:
        own = col in schema and col not in mapped
        if (own or (side_info and col not in used)) and col not in spec.constants:
            mapped.setdefault(col, F.col(f"`{col}`"))
    for canon, value in spec.constants.items():
        mapped[canon] = F.lit(str(value))
    from socialrec.features.validation import REQUIRED

    for col in REQUIRED[table]:
        if col not in mapped:
            raise DataError(path.name, header_line, col, f"a column for {table} '{col}' (map one "
                            "under columns:, or give a value under constants:)", found=found)
    return _convert(raw, mapped, table, path.name, spec.on_error, header_line is not None,
                    fmt == "parquet")


def _convert(raw: DataFrame, mapped: dict[str, Column], table: str, file: str, on_error: str,
             header: bool, parquet: bool) -> DataFrame:
    """features/validation.py's conversions, as Spark expressions: each column's value and
    whether the cell is bad; bad rows are refused (the first named) or dropped, duplicates
    dropped."""
    from pyspark.sql import functions as F

    schema = SCHEMAS[table]
    columns = [c for c in schema if c in mapped]
    extra = [c for c in mapped if c not in schema]
    values: dict[str, Column] = {}
    bad: dict[str, Column] = {}
    for col in columns + extra:
        # Python's str.strip(): leading and trailing whitespace of any kind
        text = F.regexp_replace(mapped[col].cast("string"), r"^\s+|\s+$", "")
        text = F.when(text == "", None).otherwise(text)
        if col not in schema:
            values[col], bad[col] = text, F.lit(False)
        elif col in ID_COLUMNS:
            values[col], bad[col] = text, text.isNull()
        elif col == "event":
            lower = F.lower(text)
            values[col], bad[col] = lower, ~F.coalesce(lower.isin(*EVENT_TYPES), F.lit(False))
        elif col in ("ts", "value", "weight", "price"):
            number = text.cast("double")
            wrong = text.isNotNull() & (number.isNull() | F.isnan(number)
                                        | (F.abs(number) == float("inf")))
            if col == "ts":
                wrong = wrong | (number.isNotNull() & (F.floor(number) != number))
                values[col] = F.when(~wrong, number.cast("bigint"))
            else:
                values[col] = F.when(~wrong, number)
            bad[col] = wrong
        elif col in ("joined", "push_opt_in"):
            lower = F.lower(text)
            default = _BOOL_DEFAULTS.get(col, False)
            values[col] = (F.when(lower.isin(*_TRUE), True).when(lower.isin(*_FALSE), False)
                           .when(lower.isNull(), default))
            bad[col] = lower.isNotNull() & ~lower.isin(*_TRUE, *_FALSE)
        else:
            values[col], bad[col] = text, F.lit(False)
    names = columns + extra
    first_bad = F.lit(None).cast("string")
    for col in reversed(names):
        first_bad = F.when(bad[col], F.lit(col)).otherwise(first_bad)
    frame = raw.select(F.col(ROW), *[values[c].alias(c) for c in names],
                       first_bad.alias("_bad"))
    # exact duplicates (in every canonical column) are dropped, the first occurrence kept; bad
    # rows ride along (their bad cells are null) so that one pass converts, deduplicates, caches
    # and finds the first bad row
    first_of_each = frame.groupBy(*names, "_bad").agg(F.min(ROW).alias(ROW))
    typed = first_of_each.select(ROW, "_bad", *[_typed(c, table) for c in names]).cache()
    first = typed.where(F.col("_bad").isNotNull()).agg(F.min(ROW).alias(ROW)).collect()[0][ROW]
    if first is not None and on_error == "refuse":
        col = typed.where(F.col(ROW) == first).select("_bad").collect()[0][0]
        got = raw.where(F.col(ROW) == first).select(mapped[col].cast("string")).collect()[0][0]
        line = _line_of(raw, first, header, parquet)
        from socialrec.features.validation import _kind

        raise DataError(file, line, col, _kind(col)[1] if col in schema else "text",
                        got="" if got is None else got, line_kind="row" if parquet else "line")
    kept = typed.where(F.col("_bad").isNull()).drop("_bad")
    # every output is derived from the tables: read and convert each file once
    return _conform(kept, table)


def _line_of(frame: DataFrame, row_id: int, header: bool, parquet: bool) -> int:
    """The 1-based line (or row) of the row whose id is ``row_id``: its rank in file order."""
    from pyspark.sql import functions as F

    position = frame.where(F.col(ROW) < row_id).count()
    return position + (1 if parquet or not header else 2)


def _typed(col: str, table: str) -> Column:
    from pyspark.sql import functions as F

    kind = SCHEMAS[table].get(col, "string")
    return F.col(col).cast(SPARK_TYPES[kind]).alias(col)


def _conform(df: DataFrame, table: str) -> DataFrame:
    """tables.conform: the canonical columns in order (missing optional ones filled with their
    defaults), side columns of items / users after them, rows in file order."""
    from pyspark.sql import functions as F

    schema = SCHEMAS[table]
    cols = []
    for col, kind in schema.items():
        if col in df.columns:
            cols.append(F.col(col))
        else:
            fill = OPTIONAL_DEFAULTS.get(col)
            cols.append(F.lit(fill).cast(SPARK_TYPES[kind]).alias(col))
    extra = [F.col(c) for c in df.columns if c not in schema and c != ROW]
    return df.select(ROW, *cols, *extra)


# --- the split -----------------------------------------------------------------------------------


@dataclass
class SparkSplit:
    train: DataFrame
    valid: DataFrame
    test: DataFrame
    social: DataFrame
    train_shares: DataFrame
    valid_shares: DataFrame
    test_shares: DataFrame
    protocol: str
    cut_ts: int | None


def temporal_split(inter: DataFrame, social: DataFrame, shares: DataFrame,
                   cfg: SplitConfig) -> SparkSplit:
    """features/splits.py ``temporal_split``, with the cuts read from the exact histogram of
    event times (collected per distinct second: a year of seconds is 31.5M at most)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from socialrec.features.splits import _date, _percent, _to_ts

    r = _ratios(cfg.ratios)
    missing = inter.where(F.col("ts").isNull()).count()
    if missing:
        raise ValueError(f"split.method temporal needs timestamps, but {missing} interactions "
                         f"have none")
    hist = inter.groupBy("ts").count().toPandas().sort_values("ts")
    seconds = hist["ts"].to_numpy(dtype=np.int64)
    counts = hist["count"].to_numpy(dtype=np.int64)

    def quantile_below(limit: float, q: float) -> int:
        """_quantile(sorted times below ``limit``, q) without materialising them."""
        keep = seconds < limit
        secs, cum = seconds[keep], np.cumsum(counts[keep])
        n = int(cum[-1]) if len(cum) else 0
        k = int(q * n)
        if k < n:
            return int(secs[np.searchsorted(cum, k + 1)])
        return int(secs[-1]) + 1

    if cfg.cut_ts is None:
        test_start = quantile_below(np.inf, r[TRAIN] + r[VALID])
    else:
        test_start = _to_ts(cfg.cut_ts)
    if cfg.valid_cut_ts is None:
        kept = r[TRAIN] + r[VALID]
        n_before = int(counts[seconds < test_start].sum())
        valid_start = (quantile_below(test_start, r[TRAIN] / kept) if kept > 0 and n_before
                       else test_start)
    else:
        valid_start = _to_ts(cfg.valid_cut_ts)
    valid_start = min(valid_start, test_start)

    def part_of(ts: Column) -> Column:
        return (F.when(ts < valid_start, TRAIN).when(ts < test_start, VALID)
                .otherwise(TEST))

    inter = inter.withColumn("_part", part_of(F.col("ts")))
    first = F.min("_part").over(Window.partitionBy("user_id", "item_id"))
    inter = inter.withColumn("_first", first).cache()  # read by the count and the three parts
    repeats = inter.where(F.col("_part") != F.col("_first")).count()
    inter = inter.where(F.col("_part") == F.col("_first"))
    parts = [inter.where(F.col("_part") == p).drop("_part", "_first") for p in (TRAIN, VALID,
                                                                                TEST)]
    s_part = F.when(F.col("ts").isNull(), TRAIN).otherwise(part_of(F.col("ts")))
    shares = shares.withColumn("_part", s_part)
    share_parts = [shares.where(F.col("_part") == p).drop("_part") for p in (TRAIN, VALID, TEST)]
    social = social.where(F.col("ts").isNull() | (F.col("ts") < valid_start))
    how = ("ratios " + _percent(r)) if cfg.cut_ts is None else f"cut_ts {test_start}"
    protocol = (f"temporal global cut ({how}): train before {_date(valid_start)}, valid before "
                f"{_date(test_start)}, test after; social edges after the train cut left out; "
                f"{repeats} later events of pairs seen in an earlier part dropped")
    train, valid, test = parts
    train_shares, valid_shares, test_shares = share_parts
    return SparkSplit(train, valid, test, social, train_shares, valid_shares, test_shares,
                      protocol=protocol, cut_ts=valid_start - 1)


def make_split(tables: dict[str, DataFrame], cfg: dict[str, Any]) -> SparkSplit:
    split = SplitConfig.model_validate(cfg)
    if split.method == "temporal":
        return temporal_split(tables["interactions"], tables["social"], tables["shares"], split)
    raise ValueError(
        f"split.method: the Spark job cuts 'temporal' splits; {split.method!r} is not written for "
        f"Spark (random_ratio draws one numpy permutation over every pair, which a distributed "
        f"job cannot reproduce): use the pandas path, or split.method: temporal")


# --- tie strength --------------------------------------------------------------------------------


def tie_strength(split: SparkSplit, symmetric: bool) -> DataFrame:
    """``(src, dst, weight)`` for every training social edge: features/tie_strength.py's
    :func:`~socialrec.features.tie_strength.combine` of the training-period components (cut: the
    latest training share; half-life: a quarter of the shares' span)."""
    from pyspark.sql import functions as F

    edges = (split.social.where(F.col("src") != F.col("dst"))
             .select("src", "dst", F.coalesce("weight", F.lit(1.0)).alias("w")))
    if symmetric:
        edges = edges.unionByName(edges.select(F.col("dst").alias("src"),
                                               F.col("src").alias("dst"), "w"))
    edges = edges.groupBy("src", "dst").agg(F.avg("w").alias("w")).where(F.col("w") != 0)
    # Adamic-Adar and co-interactions compare the two ends' neighbourhoods: each user's friends
    # (with their 1 / log(degree), 0 for degree 1) and items as arrays, joined onto the edges by
    # both ends and intersected per edge. (Joining edges with friend or item lists row by row
    # makes deg² rows per user: 400M at 1M users with 20 friends.)
    friends = edges.select(F.col("src").alias("a"), F.col("dst").alias("b")).unionByName(
        edges.select(F.col("dst").alias("a"), F.col("src").alias("b"))).distinct()
    degree = friends.groupBy("a").agg(F.count("*").alias("deg"))
    inv_log = degree.select(F.col("a").alias("b"), F.when(
        F.col("deg") > 1, 1.0 / F.log(F.col("deg").cast("double"))).otherwise(0.0).alias("iw"))
    around = (friends.join(inv_log, "b").groupBy("a")
              .agg(F.collect_list(F.struct("b", "iw")).alias("nb")))
    items = (split.train.select(F.col("user_id").alias("a"), "item_id").distinct()
             .groupBy("a").agg(F.collect_list("item_id").alias("items")))
    ends = around.join(items, "a", "left")
    out = (edges.select(F.col("src").alias("u"), F.col("dst").alias("v"), "w")
           .join(ends.select(F.col("a").alias("u"), F.col("nb").alias("nu"),
                             F.col("items").alias("iu")), "u")
           .join(ends.select(F.col("a").alias("v"), F.col("nb").alias("nv"),
                             F.col("items").alias("iv")), "v"))
    out = out.select("u", "v", "w", F.aggregate(
        F.array_intersect("nu", "nv"), F.lit(0.0), lambda acc, x: acc + x["iw"]).alias("aa"),
        F.size(F.coalesce(F.array_intersect("iu", "iv"), F.array())).alias("co"))
    shares = split.train_shares
    known = shares.where(F.col("ts").isNotNull()).agg(F.max("ts").alias("hi"),
                                                      F.min("ts").alias("lo")).collect()[0]
    recency = F.lit(1.0)
    if known["hi"] is not None:
        ref, half_life = float(known["hi"]), (float(known["hi"]) - float(known["lo"])) / 4.0
        if half_life > 0:
            age = F.greatest(F.lit(ref) - F.col("ts").cast("double"), F.lit(0.0))
            recency = F.when(F.col("ts").isNull(), 1.0).otherwise(
                F.pow(F.lit(2.0), -age / F.lit(half_life)))
    weighted = shares.select(F.col("sharer_id").alias("a"), F.col("recipient_id").alias("b"),
                             recency.alias("r"), F.col("joined").cast("double").alias("j"))
    both_ways = weighted.unionByName(weighted.select(F.col("b").alias("a"), F.col("a").alias("b"),
                                                     "r", "j"))
    together = both_ways.groupBy(F.col("a").alias("u"), F.col("b").alias("v")).agg(
        F.sum("r").alias("recent"), F.sum("j").alias("joins"))
    out = out.join(together, ["u", "v"], "left")
    weight = F.col("w") * (F.lit(1.0) + F.log1p(F.coalesce("recent", F.lit(0.0)))
                           + F.log1p(F.coalesce("joins", F.lit(0.0)))
                           + F.log1p(F.coalesce("aa", F.lit(0.0)))
                           + F.log1p(F.coalesce(F.col("co").cast("double"), F.lit(0.0))))
    return out.select(F.col("u").alias("src"), F.col("v").alias("dst"),
                      weight.cast("float").alias("weight"))


# --- the job -------------------------------------------------------------------------------------


@dataclass
class JobSummary:
    out: Path
    rows: dict[str, int]
    seconds: float
    protocol: str


def build_tables(spark: SparkSession, config: dict[str, Any], out: Path, root: Path,
                 config_dir: Path) -> JobSummary:
    """Run the job for a resolved config (its ``dataset`` must be ``source: files``) and write
    ``out`` (module docstring); an existing ``out`` is replaced only once the new one is
    complete."""
    started = time.perf_counter()
    dataset = config["dataset"]
    if dataset.get("source") != "files":
        raise ValueError(f"the Spark job reads event logs mapped by dataset.files (source: files), "
                         f"not source {dataset.get('source')!r}")
    files = dict(dataset.get("files") or {})
    if not files.get("interactions"):
        raise ValueError("dataset.files: an 'interactions' table is required")
    tables: dict[str, DataFrame] = {}
    for table in TABLES:
        raw_spec = files.get(table)
        if raw_spec:
            step = time.perf_counter()
            tables[table] = read_table(spark, TableSpec.model_validate(raw_spec), table, root,
                                       config_dir)
            log.info("read %s in %.1f s", table, time.perf_counter() - step)
        elif table in ("social", "shares"):
            tables[table] = _empty(spark, table)
    step = time.perf_counter()
    split = make_split(tables, config["split"])
    log.info("split in %.1f s", time.perf_counter() - step)
    step = time.perf_counter()
    ties = tie_strength(split, bool(dataset.get("social_symmetric", True)))
    log.info("tie strength planned in %.1f s", time.perf_counter() - step)

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    rows: dict[str, int] = {}
    try:
        for table, frame in tables.items():
            rows[table] = _write(frame, tmp / "tables" / f"{table}.parquet")
        for name in ("train", "valid", "test", "social", "train_shares", "valid_shares",
                     "test_shares"):
            rows[f"split.{name}"] = _write(getattr(split, name), tmp / "split" / f"{name}.parquet")
        rows["tie_strength"] = _write(ties, tmp / "tie_strength.parquet", order=("src", "dst"))
        manifest = {"protocol": split.protocol, "cut_ts": split.cut_ts, "rows": rows,
                    "social_symmetric": bool(dataset.get("social_symmetric", True)),
                    "name": dataset.get("name")}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return JobSummary(out, rows, time.perf_counter() - started, split.protocol)


def _empty(spark: SparkSession, table: str) -> DataFrame:
    from pyspark.sql import types as T

    kinds = {"string": T.StringType(), "bigint": T.LongType(), "double": T.DoubleType(),
             "boolean": T.BooleanType()}
    fields = [T.StructField(ROW, T.LongType())] + [
        T.StructField(c, kinds[SPARK_TYPES[k]]) for c, k in SCHEMAS[table].items()]
    return spark.createDataFrame([], T.StructType(fields))


def _write(frame: DataFrame, path: Path, order: tuple[str, ...] = (ROW,)) -> int:
    """``frame`` as one Parquet file at ``path`` (rows in ``order``, the position column
    dropped): one file, so that readers see the rows in order."""
    ordered = frame.orderBy(*order)
    if ROW in frame.columns:
        ordered = ordered.drop(ROW)
    staging = path.with_name(path.name + ".parts")
    started = time.perf_counter()
    ordered.coalesce(1).write.mode("overwrite").parquet(str(staging))
    part = next(staging.glob("part-*.parquet"))
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, path)
    shutil.rmtree(staging)
    import pyarrow.parquet as pq

    rows = int(pq.ParquetFile(path).metadata.num_rows)
    log.info("wrote %s/%s: %d rows in %.1f s", path.parent.name, path.name, rows,
             time.perf_counter() - started)
    return rows

