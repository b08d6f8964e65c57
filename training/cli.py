"""The ``socialrec`` command line (typer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from socialrec.training.cli_ab import ab_app
from socialrec.training.config import PROJECT_ROOT, ConfigError, load_config
from socialrec.training.tune import tune_app

app = typer.Typer(
    help="socialrec: social e-commerce recommendation and targeted push.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(ab_app, name="ab")
app.add_typer(tune_app, name="tune")
console = Console()

ConfigOpt = Annotated[
    list[Path], typer.Option("--config", "-c", help="YAML config file(s), later ones win.")
]
SetOpt = Annotated[
    list[str], typer.Option("--set", "-s", help="Override: key.path=value (YAML value).")
]


def _config(config: list[Path] | None, overrides: list[str] | None) -> dict:
    try:
        return load_config(config or [], overrides or [])
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
) -> None:
    """Load → validate → split → train → evaluate → index → log to MLflow → register."""
    from socialrec.features.validation import DataError
    from socialrec.training.pipeline import run_training

    cfg = _config(config, set_)
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


@app.command()
def promote(
    model: Annotated[str, typer.Option(help="Registered model name.")],
    version: Annotated[str, typer.Option(help="Version to promote.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Move the alias even if the gate refuses.")] = False,
) -> None:
    """Move an alias to a version, gated on offline metrics against the current holder."""
    from socialrec.training import tracking

    cfg = _config(config, set_)
    client, _ = tracking.setup(cfg)
    try:
        rows = tracking.promote(
            client, model, version, alias, cfg["tracking"]["gate_metrics"], force
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

    cfg = _config(config, set_)
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
    cfg = _config(config, set_)
    seed_list = [int(cfg["split"]["seed"]) + i for i in range(seeds)]
    names = [m.strip() for m in models.split(",") if m.strip()]
    results, prepared, bench_id = run_benchmark(cfg, names, seed_list)
    command = (
        "socialrec benchmark " + " ".join(sys.argv[2:])
        if len(sys.argv) > 2
        else "socialrec benchmark"
    )
    text = markdown(results, prepared, cfg, command, seed_list, bench_id, commit=commit)
    path = write_results(out or Path("results") / f"{cfg['dataset']['name']}.md", text)
    console.print(text)
    console.print(f"written to {path}")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run the BentoML service (loads the configured registry alias)."""
    from socialrec.training import tracking

    cfg = _config(config, set_)
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri(cfg)  # already honours the environment
    env.setdefault("SOCIALREC_MODEL", cfg["serving"]["model"])
    env.setdefault("SOCIALREC_ALIAS", cfg["serving"]["alias"])
    env.setdefault("SOCIALREC_EVENT_STORE", tracking.anchored_sqlite(cfg["serving"]["event_store"]))
    if cfg["serving"].get("experiments"):
        experiments = Path(cfg["serving"]["experiments"])
        env.setdefault(
            "SOCIALREC_EXPERIMENTS",
            str(experiments if experiments.is_absolute() else PROJECT_ROOT / experiments),
        )
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "socialrec.serving.service:SocialRec",
        "--host",
        host,
        "--port",
        str(port),
    ]
    raise typer.Exit(subprocess.call(cmd, env=env))


def _registry_bundle(cfg: dict, alias: str | None = None):
    """The bundle the configured serving alias points to, via the service's own loader."""
    from socialrec.serving.loader import RegistrySource
    from socialrec.training import tracking

    source = RegistrySource(cfg["serving"]["model"], tracking.tracking_uri(cfg))
    alias = alias or cfg["serving"]["alias"]
    version = source.resolve(alias)
    return source.load(alias, version), f"{cfg['serving']['model']}/{version}"


@app.command()
def push(
    item: Annotated[str, typer.Option(help="Item id to push.")],
    k: Annotated[int, typer.Option(help="How many users.")],
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    alias: Annotated[
        str | None, typer.Option(help="Registry alias (default serving.alias).")
    ] = None,
    exclude_buyers: Annotated[bool, typer.Option(help="Drop users who bought the item.")] = True,
    respect_opt_out: Annotated[bool, typer.Option(help="Drop users who opted out.")] = True,
    max_pushes: Annotated[
        int | None, typer.Option(help="Frequency cap: pushes per window.")
    ] = None,
    window_hours: Annotated[int, typer.Option(help="Frequency cap window.")] = 24,
) -> None:
    """Campaign-size push list (k up to every user) written to a file, with the same rules as
    the service's /push_targets."""
    import time

    import pandas as pd

    from socialrec.features.events import EventStore
    from socialrec.serving.retrieval import push_targets
    from socialrec.serving.schemas import FrequencyCapRule, PushRules
    from socialrec.training import tracking

    cfg = _config(config, set_)
    bundle, version = _registry_bundle(cfg, alias)
    cap = (
        None
        if max_pushes is None
        else FrequencyCapRule(max_pushes=max_pushes, window_hours=window_hours)
    )
    rules = PushRules(
        exclude_buyers=exclude_buyers,
        respect_opt_out=respect_opt_out,
        frequency_cap=cap,
        holdout=False,
    )
    store = None
    if cap is not None:
        store = EventStore(
            os.environ.get("SOCIALREC_EVENT_STORE")
            or tracking.anchored_sqlite(cfg["serving"]["event_store"])
        )
    t = time.perf_counter()
    try:
        result = push_targets(bundle, item, k, rules, store)
    except (KeyError, ValueError) as err:
        console.print(f"[red]{err.args[0] if err.args else err}[/red]")
        raise typer.Exit(2) from None
    frame = pd.DataFrame(
        {
            "rank": range(1, len(result.user_ids) + 1),
            "user_id": result.user_ids,
            "score": result.scores,
            "item_id": item,
            "model_version": version,
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    removed = ", ".join(f"{rule} {n:,}" for rule, n in result.removed.items()) or "none"
    console.print(
        f"{len(frame):,} users for item {item} from {version} "
        f"({result.strategy}, {time.perf_counter() - t:.2f} s) -> {out}; removed: {removed}"
    )


@app.command()
def demo(
    url: Annotated[
        str, typer.Option(help="Base URL of a running service.")
    ] = "http://127.0.0.1:3000",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Call every endpoint of a running service once with real ids and print the answers."""
    import httpx
    import numpy as np

    cfg = _config(config, set_)
    bundle, _ = _registry_bundle(cfg)
    # A sharer with friends and purchases, and an item they bought: the question a share UI asks.
    degree = np.diff(bundle.social.indptr)
    bought = np.diff(bundle.purchases.indptr)
    sharer = int(np.argmax((degree > 2) & (bought > 0)))
    item = int(bundle.purchases.indices[bundle.purchases.indptr[sharer]])
    hot_item = int(np.argmax(bundle.popularity))
    user_id, item_id = bundle.users.to_ids([sharer])[0], bundle.items.to_ids([item])[0]
    hot_id = bundle.items.to_ids([hot_item])[0]
    calls = [
        ("/push_targets", {"item_id": hot_id, "k": 5}),
        ("/share_partners", {"user_id": user_id, "item_id": item_id, "k": 5}),
        ("/recommend", {"user_id": user_id, "k": 5}),
        (
            "/feedback",
            {
                "events": [
                    {
                        "event_id": f"demo-{os.getpid()}",
                        "user_id": user_id,
                        "item_id": item_id,
                        "event": "click",
                    }
                ]
            },
        ),
        ("/recommend", {"user_id": "no-such-user", "k": 3}),
        ("/push_targets", {"item_id": hot_id, "k": 0}),
    ]
    with httpx.Client(base_url=url, timeout=30) as client:
        for path, body in calls:
            response = client.post(path, json=body)
            console.rule(f"POST {path} {json.dumps(body)} -> {response.status_code}")
            console.print_json(response.text)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
