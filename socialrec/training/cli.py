"""The training commands of ``socialrec``: train, promote, benchmark, tune, data describe,
uplift train / benchmark.

socialrec/cli.py gathers them with every other package's commands into one ``socialrec``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from socialrec.training.config import ConfigError, load_config
from socialrec.training.loop_cli import loop_app
from socialrec.training.tune import tune_app
from socialrec.training.uplift_cli import uplift_app

app = typer.Typer(pretty_exceptions_enable=False)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(tune_app, name="tune")
app.add_typer(uplift_app, name="uplift")
app.add_typer(loop_app)  # retrain (training/loop_cli.py)
console = Console()

ConfigOpt = Annotated[
    list[Path] | None, typer.Option("--config", "-c", help="YAML config file(s), later ones win.")
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override: key.path=value (YAML value).")
]


def load_or_exit(config: list[Path] | None, overrides: list[str] | None) -> dict:
    """The resolved config, or exit 2 with the config error (file, key, what was expected)."""
    try:
        return load_config(list(config or []), overrides or [])
    except ConfigError as err:
        console.print(f"[red]config error:[/red] {err}")
        raise typer.Exit(2) from None


@app.command()
def train(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    metrics_out: Annotated[
        Path | None, typer.Option(help="Write test metrics as JSON here.")
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Move the alias to this version if it passes the gate.")
    ] = False,
    bundle_out: Annotated[
        Path | None, typer.Option(help="Also keep the bundle in this directory.")
    ] = None,
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Log the run, register nothing.")
    ] = False,
    nproc: Annotated[
        int | None, typer.Option(
            help="Fit on N processes: starts torchrun with N ranks of this command "
                 "(training/distributed.py; config section distributed).")
    ] = None,
) -> None:
    """Load → validate → split → train → evaluate → index → log to MLflow → register."""
    from socialrec.features.validation import DataError
    from socialrec.training import distributed
    from socialrec.training.pipeline import run_training

    cfg = load_or_exit(config, set_)
    ranked = distributed.under_torchrun()
    if nproc is not None and not ranked:
        problem = distributed.launch_problem(cfg, nproc)
        if problem:
            console.print(f"[red]--nproc {nproc}:[/red] {problem}")
            raise typer.Exit(2)
        distributed.launch(nproc, cfg["distributed"]["max_restarts"], sys.argv[1:])
    if ranked:
        try:
            rank_result = distributed.train_on_rank(
                cfg, metrics_out=metrics_out, promote=promote, register=not no_register,
                bundle_out=bundle_out)
        except (DataError, distributed.DistributedError) as err:
            console.print(f"[red]{type(err).__name__}:[/red] {err}")
            raise typer.Exit(2 if isinstance(err, DataError) else 1) from None
        if rank_result is None:  # ranks other than 0 only fit
            return
        _print_result(cfg, rank_result)
        return
    if cfg["model"]["name"] == "auto":
        if bundle_out is not None:
            console.print("[red]--bundle-out keeps one model's bundle; model.name auto registers "
                          "one per winning candidate[/red]")
            raise typer.Exit(2)
        _train_auto(cfg, metrics_out, promote, not no_register)
        return
    try:
        result = run_training(
            cfg,
            metrics_out=metrics_out,
            promote=promote,
            register=not no_register,
            bundle_out=bundle_out,
        )
    except DataError as err:
        console.print(f"[red]data error:[/red] {err}")
        raise typer.Exit(2) from None
    _print_result(cfg, result)


def _print_result(cfg: dict, result: Any) -> None:
    table = Table(title=f"test metrics — {cfg['model']['name']} on {cfg['dataset']['name']}")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for task, values in result.metrics.items():
        for name, value in values.items():
            if isinstance(value, int | float):
                table.add_row(task, name, f"{value:.4f}")
    console.print(table)
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    console.print(f"time: {timing}; peak memory {result.peak_memory_mb:.0f} MB")
    console.print(f"MLflow run {result.run_id}")
    if result.model_version:
        console.print(
            f"registered [bold]{result.registered_model}[/bold] version "
            f"{result.model_version}, aliases: {', '.join(result.aliases_set)}"
        )


def _train_auto(cfg: dict, metrics_out: Path | None, promote: bool, register: bool) -> None:
    """``model.name: auto``: every candidate, then the winner of each alias (training/auto.py)."""
    from socialrec.features.validation import DataError
    from socialrec.training.auto import run_auto

    try:
        result = run_auto(cfg, promote=promote, register=register, metrics_out=metrics_out)
    except (DataError, ConfigError) as err:
        console.print(f"[red]{type(err).__name__}:[/red] {err}")
        raise typer.Exit(2) from None
    metric = cfg["model"]["auto"]["metric"]
    tasks = [t for t in ("recommend", "push", "share")
             if any(t in r.valid_metrics for r in result.candidates.values())]
    table = Table(title=f"model.name auto on {cfg['dataset']['name']}: validation {metric} "
                        f"(chooses) and test {metric}")
    table.add_column("candidate")
    for task in tasks:
        table.add_column(f"valid {task}", justify="right")
        table.add_column(f"test {task}", justify="right")
    table.add_column("serves")
    for label, run in result.candidates.items():
        cells = []
        for task in tasks:
            cells.append(f"{run.valid_metrics[task][metric]:.4f}")
            test = run.metrics.get(task, {}).get(metric)
            cells.append("—" if test is None else f"{test:.4f}")
        won = [f"{', '.join(result.endpoints[a])} ({a})" for a, w in result.winners.items()
               if w == label]
        table.add_row(label, *cells, "; ".join(won) or "—")
    console.print(table)
    for label, version in result.versions.items():
        console.print(f"registered [bold]{result.candidates[label].registered_model}[/bold] "
                      f"version {version} ({label}), aliases: "
                      f"{', '.join(result.aliases_set[label]) or 'none'}")
    console.print(f"peak memory {result.peak_memory_mb:.0f} MB")


@app.command()
def promote(
    model: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    version: Annotated[str | None, typer.Option(help="Version to promote.")] = None,
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Move the alias even if the gate refuses.")] = False,
    experiment: Annotated[str | None, typer.Option(
        help="Decide by this A/B experiment instead: champion moves to the challenger only if "
             "the report passes the guards (training/promotion.py).")] = None,
    experiments: Annotated[Path | None, typer.Option(
        help="With --experiment: the experiments file (default: serving.experiments).")] = None,
) -> None:
    """Move an alias to a version, gated on offline metrics against the current holder; with
    --experiment, move champion to the challenger by the experiment's A/B verdict."""
    from socialrec.training import tracking

    cfg = load_or_exit(config, set_)
    if experiment is not None or (model is None and version is None
                                  and cfg["promotion"]["experiment"]):
        from socialrec.training.loop_cli import promote_experiment

        promote_experiment(cfg, experiment, experiments)
        return
    if model is None or version is None:
        console.print("[red]name --model and --version (or --experiment NAME)[/red]")
        raise typer.Exit(2)
    client, _ = tracking.setup(cfg)
    rows: list[tuple[str, float | None, float]]
    try:
        rows = tracking.promote(
            client, model, version, alias, tracking.gate_metrics_for(cfg, alias), force
        )
        ok = True
    except tracking.GateRefused as refused:
        rows, ok = refused.comparison, False
        console.print(f"[red]{refused}[/red]")
    table = Table(title=f"{model}: version {version} vs holder of {alias!r}")
    for col in ("metric", "holder", "candidate"):
        table.add_column(col)
    for metric, holder, cand in rows:
        table.add_row(metric, "—" if holder is None else f"{holder:.4f}", f"{cand:.4f}")
    console.print(table)
    if not ok:
        raise typer.Exit(1)
    console.print(f"[green]{alias} -> {model} version {version}[/green]")


@data_app.command("describe")
def data_describe(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Users, items, events, social edges, density, shares and the validation report."""
    from socialrec.features.loader import load_dataset
    from socialrec.training.config import data_root
    from socialrec.training.pipeline import describe

    cfg = load_or_exit(config, set_)
    dataset = load_dataset(cfg["dataset"], data_root(cfg))
    summary = describe(dataset)
    density = summary["interactions"] / max(summary["users"] * summary["items"], 1)
    console.print(f"[bold]{summary['name']}[/bold]")
    for key in ("users", "items", "interactions", "social_edges", "share_records"):
        console.print(f"  {key:<14} {summary[key]:>12,}")
    console.print(f"  {'density':<14} {density:>12.6f}")
    console.print(f"  social symmetric: {dataset.social_symmetric}")
    console.print("  events: " + ", ".join(f"{k} {v:,}" for k, v in summary["events"].items()))
    for note in dataset.notes:
        console.print(f"  note: {note}")
    report = dataset.report
    if report is None or report.total_refused == 0:
        console.print("  validation: nothing refused")
    else:
        console.print(f"  validation: {report.total_refused:,} rows refused")
        for file, reasons in report.refused.items():
            for reason, count in reasons.items():
                console.print(f"    {file}: {reason}: {count:,}")
            for example in report.examples.get(file, []):
                console.print(f"      e.g. {example}")


@data_app.command("build-tables")
def data_build_tables(
    out: Annotated[Path, typer.Option(help="Folder to write (replaced once complete).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    master: Annotated[str, typer.Option(help="Spark master: local[N], or a cluster's URL.")] = (
        "local[*]"),
    memory: Annotated[str, typer.Option(help="Spark driver memory.")] = "4g",
) -> None:
    """The Spark feature job: the dataset.files event logs -> canonical tables, the split and
    tie strengths as Parquet (features/spark_job.py); train on them with dataset.source: tables,
    dataset.path: OUT, split.method: given."""
    from socialrec.features.spark_job import build_tables, spark_session
    from socialrec.features.validation import DataError
    from socialrec.training.config import data_root

    cfg = load_or_exit(config, set_)
    spark = spark_session(master, memory)
    try:
        summary = build_tables(spark, cfg, out, data_root(cfg), Path.cwd())
    except (DataError, ValueError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    finally:
        spark.stop()
    for name, rows in summary.rows.items():
        console.print(f"  {name:<20} {rows:>12,}")
    console.print(f"{summary.protocol}\nwritten to {summary.out} in {summary.seconds:.0f} s")


@app.command()
def benchmark(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated model names.")
    ] = "popularity,als,bpr,lightgcn,socialgnn",
    seeds: Annotated[int, typer.Option(help="Seeds per model (popularity runs once).")] = 3,
    out: Annotated[
        Path | None, typer.Option(help="Markdown file (default results/<dataset>.md).")
    ] = None,
) -> None:
    """Every model on one split and seeds; runs in one MLflow experiment; a markdown table."""
    from socialrec.training.benchmark import git_commit, markdown, run_benchmark, write_results

    commit = git_commit()  # the code that runs, before a long benchmark lets the tree move on
    cfg = load_or_exit(config, set_)
    seed_list = [int(cfg["split"]["seed"]) + i for i in range(seeds)]
    names = [m.strip() for m in models.split(",") if m.strip()]
    try:
        results, prepared, bench_id = run_benchmark(cfg, names, seed_list)
    except ConfigError as err:  # a model name or an ablation file (model@file.yaml) refused
        console.print(f"[red]config error:[/red] {err}")
        raise typer.Exit(2) from None
    command = (
        "socialrec benchmark " + " ".join(sys.argv[2:])
        if len(sys.argv) > 2
        else "socialrec benchmark"
    )
    text = markdown(results, prepared, cfg, command, seed_list, bench_id, commit=commit)
    path = write_results(out or Path("results") / f"{cfg['dataset']['name']}.md", text)
    console.print(text)
    console.print(f"written to {path}")
