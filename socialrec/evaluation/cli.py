"""``socialrec ab``: the A/B report from the event store, and a simulator that fills a store for
demos. socialrec/cli.py mounts ``ab_app`` as ``socialrec ab``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

ab_app = typer.Typer(help="A/B tests: analysis report and demo simulator.", no_args_is_help=True,
                     pretty_exceptions_enable=False)
console = Console()

DEFAULT_EXPERIMENTS = Path("configs/experiments.yaml")

StoreOpt = Annotated[str, typer.Option(
    "--store", help="Event store SQLAlchemy URL (default: env SOCIALREC_EVENT_STORE or "
                    "sqlite:///events.db).")]
ExperimentOpt = Annotated[str, typer.Option("--experiment", "-e", help="Experiment name.")]
ExperimentsOpt = Annotated[Path, typer.Option(
    "--experiments", help="Experiments file (configured weights, control, holdout).")]


def _store_url(store: str | None) -> str:
    return store or os.environ.get("SOCIALREC_EVENT_STORE", "sqlite:///events.db")


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        console.print(f"[red]{option}:[/red] expected an ISO date/time such as 2024-03-01 or "
                      f"2024-03-01T12:00:00+00:00, got {value!r}")
        raise typer.Exit(2) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def _arms(path: Path, experiment: str):  # -> ExperimentArms | None
    from socialrec.evaluation.ab import read_experiment

    if not path.exists():
        console.print(f"[yellow]{path} not found: no configured weights, the sample-ratio check "
                      "is skipped[/yellow]")
        return None
    try:
        return read_experiment(path, experiment)
    except ValueError as err:
        if "no experiment" in str(err):
            console.print(f"[yellow]{err}: the sample-ratio check is skipped[/yellow]")
            return None
        console.print(f"[red]config error:[/red] {err}")
        raise typer.Exit(2) from None


@ab_app.command()
def report(
    experiment: ExperimentOpt,
    store: StoreOpt = None,  # type: ignore[assignment]
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
    json_: Annotated[bool, typer.Option("--json", help="Also write the numbers as JSON "
                                                       "next to the HTML.")] = False,
    since: Annotated[str | None, typer.Option(help="Start of the window (ISO; UTC if no zone).")
                     ] = None,
    until: Annotated[str | None, typer.Option(help="End of the window, exclusive.")] = None,
    experiments: ExperimentsOpt = DEFAULT_EXPERIMENTS,
    control: Annotated[str | None, typer.Option(help="Control variant (default: the first "
                                                     "configured one).")] = None,
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5, help="Significance level.")] = 0.05,
    cuped: Annotated[bool, typer.Option(help="CUPED with pre-period activity, when it exists."
                                        )] = True,
    sequential: Annotated[bool, typer.Option(help="Add always-valid (mSPRT) intervals, for "
                                                  "teams that look before the end.")] = False,
) -> None:
    """Analyse an experiment from the event store: HTML report (and JSON)."""
    from socialrec.evaluation.ab import analyze_store
    from socialrec.evaluation.ab_report import write_report
    from socialrec.features.events import EventStore

    arms = _arms(experiments, experiment)
    event_store = EventStore(_store_url(store))
    try:
        result, _ = analyze_store(event_store, experiment, arms=arms,
                                  since=_time(since, "--since"), until=_time(until, "--until"),
                                  control=control, alpha=alpha, use_cuped=cuped,
                                  sequential=sequential)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    finally:
        event_store.close()
    for path in write_report(result, out, with_json=json_):
        console.print(f"wrote {path}")
    if result.flagged:
        console.print("[bold red]sample ratio mismatch: the report is flagged[/bold red]")
    for c in result.comparisons:
        if c.metric in ("conversion", "revenue_per_user"):
            e = c.effect
            console.print(f"{c.metric} {c.variant} vs {result.control}: "
                          f"{100 * e.rel_lift:+.2f}% [{100 * e.rel_ci[0]:+.2f}%, "
                          f"{100 * e.rel_ci[1]:+.2f}%], p = {e.p_value:.4f}"
                          + (" (CUPED)" if c.cuped else ""))


def _split(values: list[str] | None) -> dict[str, float] | None:
    if not values:
        return None
    out = {}
    for item in values:
        name, sep, weight = item.partition("=")
        try:
            out[name] = float(weight)
        except ValueError:
            sep = ""
        if not sep or not name:
            console.print(f"[red]--split:[/red] expected variant=share, got {item!r}")
            raise typer.Exit(2)
    return out


@ab_app.command()
def simulate(
    experiment: ExperimentOpt,
    store: StoreOpt = None,  # type: ignore[assignment]
    units: Annotated[int, typer.Option(min=2, help="Randomisation units (users or campaigns).")
                     ] = 10_000,
    lift: Annotated[float, typer.Option(help="True relative conversion lift of the "
                                             "treatments.")] = 0.05,
    revenue_lift: Annotated[float, typer.Option(help="Relative order-value lift.")] = 0.0,
    unit: Annotated[str, typer.Option(help="user | campaign (default: the configured unit, "
                                           "else user).")] = "",
    users_per_campaign: Annotated[int, typer.Option(min=1)] = 100,
    holdout: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="Held-out share "
                                                  "(default: the configured one).")] = None,
    split: Annotated[list[str] | None, typer.Option(
        help="Actual split, variant=share, repeatable: plants a sample-ratio mismatch.")] = None,
    base_conversion: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.1,
    pre_correlation: Annotated[float, typer.Option(min=0.0, max=1.0, help="How much pre-period "
                                                   "activity predicts the outcome.")] = 0.5,
    start: Annotated[str, typer.Option(help="First exposure (ISO).")] = "2024-03-01",
    days: Annotated[float, typer.Option(min=1.0)] = 14.0,
    seed: Annotated[int, typer.Option()] = 0,
    experiments: ExperimentsOpt = DEFAULT_EXPERIMENTS,
) -> None:
    """Fill an event store with a simulated experiment whose true effects are known."""
    from socialrec.evaluation.simulate import SimSpec
    from socialrec.evaluation.simulate import simulate as run_simulation
    from socialrec.features.events import EventStore

    arms = _arms(experiments, experiment)
    try:
        spec = SimSpec(
            experiment=experiment, unit=unit or (arms.unit if arms else "user"), units=units,
            users_per_campaign=users_per_campaign,
            weights=dict(arms.weights) if arms else {"control": 0.5, "treatment": 0.5},
            actual_weights=_split(split),
            holdout=holdout if holdout is not None else (arms.holdout if arms else 0.0),
            base_conversion=base_conversion, lift=lift, revenue_lift=revenue_lift,
            pre_correlation=pre_correlation, start=_time(start, "--start"),  # type: ignore[arg-type]
            days=days, seed=seed)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    event_store = EventStore(_store_url(store))
    try:
        with console.status("simulating"):
            result = run_simulation(spec, event_store)
    finally:
        event_store.close()
    console.print(f"{experiment}: {len(result.rows):,} exposed users, {result.exposures:,} "
                  f"exposures, {result.feedback:,} feedback events in {event_store.url}")
    console.print("true effects: " + ", ".join(f"{k} {v:.4g}" for k, v in result.truth.items()))
