"""The loop's commands: ``socialrec retrain`` and ``socialrec promote --experiment NAME``
(training/cli.py mounts ``loop_app`` and hands ``promote --experiment`` to
:func:`promote_experiment`). One idempotent command per step;
scheduling them is the platform's (README, "The loop").

Exit codes: 0 the step ran (a gate refusal or a ``wait`` verdict is a normal outcome, written to
MLflow); 1 it could not run (another retrain holds the lock, no parent, nothing to validate on,
no such experiment); 2 a config error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from socialrec.training.config import ConfigError, load_config

loop_app = typer.Typer(pretty_exceptions_enable=False)
console = Console()


def _config(files: list[Path] | None, overrides: list[str] | None) -> dict:
    try:
        return load_config(list(files or []), overrides or [])
    except ConfigError as err:
        console.print(f"[red]config error:[/red] {err}")
        raise typer.Exit(2) from None


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        console.print(f"[red]{option}: expected an ISO date or time (2026-01-31T06:00), "
                      f"got {text!r}[/red]")
        raise typer.Exit(2) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


@loop_app.command()
def retrain(
    config: Annotated[list[Path] | None, typer.Option(
        "--config", "-c", help="YAML config file(s), later ones win.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Override: key.path=value (YAML value).")] = None,
    since: Annotated[str | None, typer.Option(
        help="Read store events from this time on (ISO, UTC if no zone; default: "
             "retrain.since_days, else all).")] = None,
    as_of: Annotated[str | None, typer.Option(
        help="The window's end, 'now' (ISO; default: now).")] = None,
    cold: Annotated[bool, typer.Option(
        help="Train from scratch instead of warm-starting from the parent.")] = False,
    alias: Annotated[str | None, typer.Option(
        help="Alias a version that passes the gate takes (default: "
             "promotion.challenger_alias).")] = None,
) -> None:
    """Retrain on the base dataset + the event store, ids kept, warm-started from the parent,
    gated against the champion; a passing version becomes the challenger (training/retrain.py)."""
    from socialrec.training.lease import LeaseHeld
    from socialrec.training.retrain import RetrainError
    from socialrec.training.retrain import retrain as run_retrain

    cfg = _config(config, set_)
    try:
        result = run_retrain(cfg, since=_when(since, "--since"), as_of=_when(as_of, "--as-of"),
                             cold=cold, alias=alias)
    except (LeaseHeld, RetrainError) as err:
        console.print(f"[red]{type(err).__name__}:[/red] {err}")
        raise typer.Exit(1) from None
    if result.status == "unchanged":
        console.print(f"nothing new: {result.note}")
        return
    store = result.store
    assert store is not None
    console.print(f"parent version {result.parent_version} ({result.lineage['lineage.start']}); "
                  f"data window {result.lineage['lineage.window_start']} .. "
                  f"{result.lineage['lineage.window_end']}, validated from "
                  f"{result.lineage['lineage.valid_start']}")
    console.print(f"event store: {store.read:,} events read, {store.used:,} used, "
                  f"{store.total_refused:,} refused, "
                  f"{sum(store.ignored.values()):,} ignored ({store.ignored or 'none'})")
    for reason, count in store.refused.items():
        console.print(f"  refused {reason}: {count:,} (e.g. {', '.join(store.examples[reason])})")
    console.print(f"new users {result.lineage['lineage.new_users']}, new items "
                  f"{result.lineage['lineage.new_items']}; fit {result.seconds.get('fit', 0):.1f}"
                  " s")
    table = Table(title=f"gate: candidate vs champion version {result.champion_version} on the "
                        "recent window (ids the champion knows)")
    for col in ("metric", "champion", "candidate", "change (at best)", "passed"):
        table.add_column(col)
    for row in result.gate:
        change = row.candidate / row.champion - 1 if row.champion else 0.0
        table.add_row(row.metric, f"{row.champion:.4f}", f"{row.candidate:.4f}",
                      f"{change:+.1%} ({row.upper:+.1%})", "yes" if row.passed else "[red]no[/red]")
    console.print(table)
    if result.status == "trained":
        console.print(f"[green]registered version {result.version}, aliases: "
                      f"{', '.join(result.aliases)}[/green] (MLflow run {result.run_id})")
    else:
        console.print(f"[red]{result.note}[/red]; nothing registered (MLflow run "
                      f"{result.run_id})")


def promote_experiment(cfg: dict, experiment: str | None, experiments: Path | None) -> None:
    """``socialrec promote --experiment NAME``: the A/B verdict (training/promotion.py)."""
    from socialrec.training.promotion import PromotionError, promote_by_experiment

    try:
        decision = promote_by_experiment(cfg, experiment, experiments)
    except (PromotionError, ValueError) as err:
        console.print(f"[red]{type(err).__name__}:[/red] {err}")
        raise typer.Exit(1) from None
    colour = {"promoted": "green", "rejected": "red", "refused_srm": "red"}.get(
        decision.verdict, "yellow")
    console.print(f"[{colour}]{decision.verdict}[/{colour}]: {decision.reason}")
    console.print(f"champion version {decision.champion_version}, challenger version "
                  f"{decision.challenger_version}; window from {decision.window_start or '—'}")
    for key, value in decision.numbers.items():
        console.print(f"  {key}: {value:.4g}")
    for alias, version in decision.moved.items():
        console.print(f"  {alias} -> version {version}")
    console.print(f"decision logged: MLflow run {decision.run_id}")
