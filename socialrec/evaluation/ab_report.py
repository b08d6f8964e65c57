"""The A/B report: one self-contained HTML page (inline CSS, plots as base64 PNG) and a JSON file
with the same numbers, from an :class:`~socialrec.evaluation.ab.ABResult`.

The page is the Jinja2 template templates/ab_report.html.j2, rendered with autoescape on, so an
experiment, variant or note that holds markup shows as text. This module formats the numbers
(the template's filters) and draws the plots, on a bare matplotlib ``Figure`` (Agg canvas, no
pyplot), so rendering needs no display and touches no global state.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from socialrec.evaluation.ab import METRIC_BY_NAME, ABResult
from socialrec.evaluation.ab_stats import SMALL_SAMPLE_EVENTS, Effect

TEMPLATE = "ab_report.html.j2"


# -- the template's filters ----------------------------------------------------------------------

def _number(value: float | None, metric: str = "", pct: bool = False) -> str:
    """A value as the report shows it: a percentage for rates (``pct`` or a binary metric)."""
    if value is None or not math.isfinite(value):
        return "–"
    binary = METRIC_BY_NAME[metric].binary if metric in METRIC_BY_NAME else False
    if pct or binary:
        return f"{100 * value:.2f}%"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _interval(ci: tuple[float, float] | None, metric: str = "", pct: bool = False) -> str:
    if ci is None:
        return "–"
    return f"[{_number(ci[0], metric, pct)}, {_number(ci[1], metric, pct)}]"


def _p_value(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _grouped(value: float, decimals: int = 0) -> str:
    """Thousands separated: 12,345 (12,345.7 with one decimal)."""
    return f"{value:,.{decimals}f}"


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("socialrec.evaluation", "templates"),
        autoescape=True,  # every template here is HTML: names and notes from the data are text
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render, not the reader
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(number=_number, interval=_interval, p_value=_p_value, grouped=_grouped)
    env.tests["finite"] = _is_finite
    return env


# -- plots ---------------------------------------------------------------------------------------

def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def lift_plot(result: ABResult) -> str | None:
    """:func:`lift_figure` as a base64 PNG."""
    fig = lift_figure(result)
    return _png(fig) if fig is not None else None


def lift_figure(result: ABResult) -> Figure | None:
    """Relative lift with its interval, one line per (metric, variant).

    Two panels, each on its own scale: the A/B variants against the control, and pushed against
    held-out users. Push incrementality is usually hundreds of percent and A/B lifts a few, so
    on one axis the A/B rows would be unreadable."""
    ab = [(f"{c.metric} · {c.variant}" + (" (CUPED)" if c.cuped else ""), c.effect)
          for c in result.comparisons if _plottable(c.effect)]
    inc = [(f"conversion · {i.scope} pushed vs holdout", i.conversion)
           for i in result.incrementality if _plottable(i.conversion)]
    panels = [(f"A/B: variants vs {result.control}", ab),
              ("push incrementality: pushed vs held-out users", inc)]
    panels = [(title, rows) for title, rows in panels if rows]
    if not panels:
        return None
    sizes = [len(rows) for _, rows in panels]
    fig = Figure(figsize=(8, 0.45 * sum(sizes) + 1.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [n + 1.5 for n in sizes]})[:, 0]
    for ax, (title, rows) in zip(axes, panels, strict=True):
        y = np.arange(len(rows))[::-1]
        for yi, (_, e) in zip(y, rows, strict=True):
            lo, hi = e.rel_ci
            color = "#1a7f37" if lo > 0 else ("#b42318" if hi < 0 else "#555555")
            ax.plot([100 * lo, 100 * hi], [yi, yi], color=color, lw=2)
            ax.plot(100 * e.rel_lift, yi, "o", color=color)
        ax.axvline(0, color="#999999", lw=1, ls="--")
        ax.set_yticks(y, [label for label, _ in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(f"relative lift (%), {100 * (1 - result.alpha):.0f}% CI")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _plottable(e: Effect) -> bool:
    return all(math.isfinite(v) for v in (e.rel_lift, *e.rel_ci))


def cumulative_plot(result: ABResult) -> str | None:
    """Cumulative conversion over time per arm; base64 PNG."""
    cum = result.cumulative
    if not cum.get("times"):
        return None
    times = pd.to_datetime(cum["times"], format="ISO8601")
    fig = Figure(figsize=(8, 3.8))
    ax = fig.add_subplot()
    for arm, rates in cum["rates"].items():
        ax.plot(times, 100 * np.asarray(rates, dtype=float), label=arm, lw=2)
    ax.set_ylabel("users who bought / users exposed (%)")
    ax.set_title("cumulative conversion")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


# -- the page ------------------------------------------------------------------------------------

def _few_events(named: Iterable[tuple[str, Effect]]) -> list[tuple[str, Effect]]:
    """The (name, effect) pairs whose normal approximation rests on too few events."""
    return [(name, e) for name, e in named if e.small_sample and e.events]


def render_html(result: ABResult) -> str:
    """The report as one HTML page."""
    metrics = list(next(iter(result.arms)).metrics) if result.arms else []
    sections = []
    for metric in metrics:
        comparisons = [c for c in result.comparisons if c.metric == metric]
        sections.append({
            "metric": metric,
            "label": METRIC_BY_NAME[metric].label if metric in METRIC_BY_NAME else metric,
            "comparisons": comparisons,
            "few_events": _few_events((c.variant, c.effect) for c in comparisons),
        })
    incrementality_few_events = _few_events(
        (f"{what} · {i.scope}", e) for i in result.incrementality
        for what, e in (("conversion", i.conversion), ("revenue", i.revenue)))
    cuped_state = ("on" if result.cuped_enabled and result.cuped_available else
                   "off (no pre-period data)" if result.cuped_enabled else "off")
    return _environment().get_template(TEMPLATE).render(
        result=result, metrics=metrics, metric_sections=sections,
        incrementality_few_events=incrementality_few_events, cuped_state=cuped_state,
        small_sample_events=SMALL_SAMPLE_EVENTS,
        lift_png=lift_plot(result), cumulative_png=cumulative_plot(result))


def render_json(result: ABResult) -> str:
    return json.dumps(result.to_dict(), indent=2)


def write_report(result: ABResult, out: str | Path, with_json: bool = False) -> list[Path]:
    """Write ``out`` (HTML) and, with ``with_json``, the same numbers next to it as .json."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(result), encoding="utf-8")
    written = [out]
    if with_json:
        json_path = out.with_suffix(".json")
        json_path.write_text(render_json(result), encoding="utf-8")
        written.append(json_path)
    return written
