"""The A/B report: one self-contained HTML page (inline CSS, plots as base64 PNG) and a JSON file
with the same numbers, from an :class:`~socialrec.evaluation.ab.ABResult`.

Plots are drawn on a bare matplotlib ``Figure`` (Agg canvas, no pyplot), so rendering needs no
display and touches no global state.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterable
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from socialrec.evaluation.ab import METRIC_BY_NAME, ABResult, Incrementality
from socialrec.evaluation.ab_stats import SMALL_SAMPLE_EVENTS, Effect, SRMCheck

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.banner { padding: 0.8em 1em; border-radius: 4px; margin: 1em 0; }
.srm { background: #fde2e1; border: 1px solid #d9534f; color: #7a1f1c; font-weight: bold; }
.ok { background: #e6f4ea; border: 1px solid #5cb85c; }
.sig { color: #1a7f37; font-weight: bold; } .neg { color: #b42318; font-weight: bold; }
.note { color: #666; font-size: 0.9em; }
.warn { color: #8a5a00; font-weight: bold; }
img { max-width: 100%; }
"""


def _fmt(value: float | None, metric: str = "", pct: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    binary = METRIC_BY_NAME[metric].binary if metric in METRIC_BY_NAME else False
    if pct or binary:
        return f"{100 * value:.2f}%"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _ci(ci: tuple[float, float] | None, metric: str = "", pct: bool = False) -> str:
    if ci is None:
        return "–"
    return f"[{_fmt(ci[0], metric, pct)}, {_fmt(ci[1], metric, pct)}]"


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "&lt;0.0001" if p < 1e-4 else f"{p:.4f}"


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


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _srm_html(check: SRMCheck | None) -> str:
    if check is None:
        return ""
    total = sum(check.observed.values()) or 1
    rows = [[escape(arm), f"{check.observed.get(arm, 0):,}",
             _fmt(check.observed.get(arm, 0) / total, pct=True), _fmt(share, pct=True)]
            for arm, share in check.expected_share.items()]
    verdict = "<span class='neg'>MISMATCH</span>" if check.flagged else "ok"
    note = f"<p class='note'>{escape(check.note)}</p>" if check.note else ""
    return (f"<h3>{escape(check.what)}: {verdict} (χ² = {_fmt(check.chi2)}, "
            f"p = {_p(check.p_value)})</h3>"
            + _table(["arm", "observed", "observed share", "configured share"], rows) + note)


def _rel(e: Effect) -> list[str]:
    """The rel. lift and rel. CI cells; the reason when they are undefined."""
    if not math.isfinite(e.rel_lift):
        return [f"– <span class='note'>({escape(e.rel_note)})</span>", "–"]
    ci = _ci(e.rel_ci, pct=True)
    if e.rel_note:
        ci += f" <span class='note'>({escape(e.rel_note)})</span>"
    return [_fmt(e.rel_lift, pct=True), ci]


def _test(e: Effect) -> str:
    """The test cell, with a warning when its normal approximation rests on few events."""
    if not e.small_sample:
        return escape(e.test)
    return f"{escape(e.test)} <span class='warn'>⚠ few events</span>"


def _small_sample_note(effects: list[tuple[str, Effect]]) -> str:
    lines = [f"{escape(name)}: {e.events[0]:,} / {e.events[1]:,} events"
             for name, e in effects if e.small_sample and e.events]
    if not lines:
        return ""
    return (f"<p class='warn'>⚠ Fewer than {SMALL_SAMPLE_EVENTS} events in an arm "
            f"({'; '.join(lines)}; treatment / control). The normal approximation behind this "
            "interval and p-value is unreliable there: read them as rough.</p>")


def _sig(e: Effect, alpha: float) -> str:
    if e.p_value is None or not math.isfinite(e.p_value) or e.p_value >= alpha:
        return "no"
    cls = "sig" if e.abs_lift > 0 else "neg"
    return f"<span class='{cls}'>yes</span>"


def _metric_section(result: ABResult, metric: str) -> str:
    arms = [[escape(a.name), f"{a.units:,}", f"{a.users:,}", _fmt(a.metrics.get(metric), metric)]
            for a in result.arms]
    html = _table(["arm", "units", "users", "value"], arms)
    comps = [c for c in result.comparisons if c.metric == metric]
    if comps:
        rows = []
        for c in comps:
            e = c.effect
            cuped = ("off" if not c.cuped else
                     f"on (θ = {c.theta:.3g}, variance −{100 * (c.variance_reduction or 0):.1f}%)")
            rows.append([escape(c.variant), _fmt(e.abs_lift, metric), _ci(e.abs_ci, metric),
                         *_rel(e), _p(e.p_value), _sig(e, result.alpha), _test(e), cuped,
                         _ci(c.seq_ci, metric) if c.seq_ci else "–", _p(c.seq_p_value)])
        html += _table(["variant vs " + result.control, "abs. lift", "CI", "rel. lift",
                        "rel. CI", "p", "significant", "test", "CUPED",
                        "always-valid CI", "always-valid p"], rows)
        html += _small_sample_note([(c.variant, c.effect) for c in comps])
    label = METRIC_BY_NAME[metric].label if metric in METRIC_BY_NAME else metric
    return f"<h2>{escape(label)}</h2>{html}"


def _incrementality_html(items: list[Incrementality], alpha: float) -> str:
    if not items:
        return ""
    rows = []
    for i in items:
        c, r = i.conversion, i.revenue
        rows.append([escape(i.scope), f"{i.pushed_users:,}", f"{i.holdout_users:,}",
                     _fmt(c.treatment, pct=True), _fmt(c.control, pct=True),
                     _fmt(c.abs_lift, pct=True), _ci(c.abs_ci, pct=True), *_rel(c),
                     _p(c.p_value), _sig(c, alpha),
                     f"{i.incremental_conversions:,.1f} {_ci(i.incremental_conversions_ci)}",
                     _fmt(r.abs_lift), f"{i.incremental_revenue:,.2f} "
                     f"{_ci(i.incremental_revenue_ci)}"])
    return ("<h2>push incrementality: pushed vs held-out users of the same campaigns</h2>"
            + _table(["scope", "pushed", "held out", "conv. pushed", "conv. held out",
                      "abs. lift", "CI", "rel. lift", "rel. CI", "p", "significant",
                      "incremental conversions [CI]", "revenue lift / user",
                      "incremental revenue [CI]"], rows)
            + "<p class='note'>incremental conversions = (rate pushed − rate held out) × "
              f"pushed users. Conversion: {escape(_tests(i.conversion for i in items))}; "
              f"revenue: {escape(_tests(i.revenue for i in items))}.</p>"
            + _small_sample_note([(f"{what} · {i.scope}", e) for i in items
                                  for what, e in (("conversion", i.conversion),
                                                  ("revenue", i.revenue))]))


def _tests(effects: Iterable[Effect]) -> str:
    return ", ".join(dict.fromkeys(e.test for e in effects))


def render_html(result: ABResult) -> str:
    """The report as one HTML page."""
    parts = [f"<h1>A/B report: {escape(result.experiment or '(unnamed)')}</h1>",
             f"<p>window {escape(result.start)} → {escape(result.end or 'latest event')}; "
             f"control <b>{escape(result.control)}</b>; α = {result.alpha}; units are "
             f"{'users' if result.unit_is_user else 'campaigns'}.</p>"]
    if result.flagged:
        parts.append("<div class='banner srm'>Sample ratio mismatch: the observed split differs "
                     "from the configured weights. The assignment or the logging is broken; do "
                     "not trust any number in this report until it is explained.</div>")
    elif result.srm is not None:
        parts.append("<div class='banner ok'>Sample ratio check passed.</div>")
    cuped_state = ("on" if result.cuped_enabled and result.cuped_available else
                   "off (no pre-period data)" if result.cuped_enabled else "off")
    parts.append(f"<p>CUPED (pre-period activity as covariate): <b>{cuped_state}</b>.</p>")
    parts += [f"<p class='note'>{escape(n)}</p>" for n in result.notes]

    metrics = list(next(iter(result.arms)).metrics) if result.arms else []
    summary = [[escape(a.name), f"{a.units:,}", f"{a.users:,}", f"{a.exposures:,}",
                *(_fmt(a.metrics[m], m) for m in metrics)] for a in result.arms]
    parts.append("<h2>arms</h2>" + _table(["arm", "units", "users", "exposures", *metrics],
                                           summary))
    parts.append("<h2>sample ratio</h2>" + (_srm_html(result.srm) or
                 "<p class='note'>not checked: no configured weights</p>")
                 + _srm_html(result.holdout_srm))
    lift = lift_plot(result)
    if lift:
        parts.append(f"<h2>lifts</h2><img alt='relative lift per metric' "
                     f"src='data:image/png;base64,{lift}'>")
    parts += [_metric_section(result, m) for m in metrics]
    parts.append(_incrementality_html(result.incrementality, result.alpha))
    cumulative = cumulative_plot(result)
    if cumulative:
        parts.append(f"<h2>conversion over time</h2><img alt='cumulative conversion' "
                     f"src='data:image/png;base64,{cumulative}'>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>A/B report: {escape(result.experiment)}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>")


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
