"""The A/B report (socialrec/evaluation/ab_report.py and its template) and the ``ab`` commands,
through a real EventStore.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialrec.evaluation.ab import METRIC_BY_NAME, analyze, analyze_store
from socialrec.evaluation.ab_report import lift_figure, render_html, render_json, write_report
from socialrec.evaluation.cli import ab_app
from socialrec.evaluation.simulate import SimSpec, simulate, simulate_rows
from socialrec.features.events import EventStore

CONVERSION = METRIC_BY_NAME["conversion"]


@pytest.fixture(scope="module")
def push_store(tmp_path_factory):
    """A push experiment with campaign units, a 15% holdout and a planted 12% lift, in SQLite."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ab') / 'events.db'}"
    store = EventStore(url)
    spec = SimSpec(experiment="push_exp", unit="campaign", units=80, users_per_campaign=60,
                   holdout=0.15, base_conversion=0.15, lift=0.12, push_lift=0.4,
                   pre_correlation=0.8, seed=5)
    sim = simulate(spec, store)
    yield store, spec, sim
    store.close()


def test_report_from_the_event_store(push_store, tmp_path):
    store, spec, sim = push_store
    result, rows = analyze_store(store, "push_exp", arms=spec.arms(), sequential=True)
    assert len(rows) == len(sim.rows)
    assert {a.name for a in result.arms} == {"control", "treatment", "holdout"}
    assert not result.flagged

    # push incrementality: its interval covers the planted effect
    inc = next(i for i in result.incrementality if i.scope == "all")
    truth = sim.truth["push_conversion_lift"]
    assert inc.conversion.rel_ci[0] < truth < inc.conversion.rel_ci[1]
    assert inc.conversion.p_value < 0.01 and inc.incremental_conversions > 0
    assert inc.incremental_conversions == pytest.approx(
        (inc.conversion.treatment - inc.conversion.control) * inc.pushed_users)

    html = render_html(result)
    for name in ("control", "treatment", "holdout", "push incrementality", "CUPED"):
        assert name in html
    assert html.count('src=\'data:image/png;base64,iVBOR') == 2  # lift plot + conversion curve
    assert "Sample ratio mismatch" not in html

    paths = write_report(result, tmp_path / "r.html", with_json=True)
    data = json.loads(paths[1].read_text())
    conv = next(c for c in data["comparisons"] if c["metric"] == "conversion")
    assert conv["effect"]["p_value"] == pytest.approx(
        result.comparison("conversion", "treatment").effect.p_value)
    assert data["flagged"] is False and data["srm"]["observed"]["control"] > 0
    json.loads(render_json(result))  # strict JSON: no NaN


def test_cli_simulate_then_report(tmp_path):
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'events.db'}"
    exp_file = tmp_path / "experiments.yaml"
    exp_file.write_text(
        "experiments:\n  rec:\n    salt: s\n    unit: user\n    endpoints: [recommend]\n"
        "    variants:\n      base: {weight: 0.5, alias: champion}\n"
        "      gnn: {weight: 0.5, alias: challenger}\n")
    res = runner.invoke(ab_app, ["simulate", "--store", url, "-e", "rec", "--units", "1500",
                                 "--lift", "0.3", "--experiments", str(exp_file)])
    assert res.exit_code == 0, res.output
    assert "true effects: conversion_lift 0.3" in res.output
    out = tmp_path / "out" / "report.html"
    res = runner.invoke(ab_app, ["report", "--store", url, "-e", "rec", "--out", str(out),
                                 "--json", "--experiments", str(exp_file), "--sequential"])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "gnn" in html and "base" in html and "data:image/png;base64," in html
    assert json.loads(out.with_suffix(".json").read_text())["control"] == "base"

    res = runner.invoke(ab_app, ["report", "--store", url, "-e", "nope", "--out", str(out),
                                 "--experiments", str(exp_file)])
    assert res.exit_code == 2 and "no exposures" in res.output
    res = runner.invoke(ab_app, ["report", "--store", url, "-e", "rec", "--since", "yesterday",
                                 "--experiments", str(Path(tmp_path / "missing.yaml"))])
    assert res.exit_code == 2 and "--since" in res.output


def test_few_events_flag_campaign_comparisons(push_store):
    spec = SimSpec(unit="campaign", units=20, users_per_campaign=20, base_conversion=0.03,
                   seed=4)
    result = analyze(simulate_rows(spec), spec.arms(), timeline=False)
    c = result.comparison("conversion", "treatment")
    assert c.effect.test == "delta-method z" and max(c.effect.events) < 30
    assert c.effect.small_sample
    html = render_html(result)
    assert "⚠ few events" in html and "Fewer than 30 events in an arm" in html

    store, spec, _ = push_store  # 80 campaigns of 60 users at 15%: hundreds of events per arm
    result, _ = analyze_store(store, "push_exp", arms=spec.arms())
    c = result.comparison("conversion", "treatment")
    assert min(c.effect.events) >= 30 and not c.effect.small_sample
    assert "few events" not in _metric_html(render_html(result), "conversion (users who bought)")


def _metric_html(html: str, heading: str) -> str:
    return html.split(f"<h2>{heading}</h2>")[1].split("<h2>")[0]


def test_lift_plot_has_a_panel_per_scale():
    """A/B lifts of a few percent and push lifts of hundreds get their own x-axes."""
    spec = SimSpec(unit="campaign", units=200, users_per_campaign=100, holdout=0.1,
                   base_conversion=0.1, push_lift=3.0, seed=6)
    result = analyze(simulate_rows(spec), spec.arms(), metrics=(CONVERSION,), timeline=False)
    ab, inc = lift_figure(result).axes
    assert ab.get_title(loc="left").startswith("A/B") and "pushed" in inc.get_title(loc="left")
    assert len(ab.get_yticks()) == 1 and len(inc.get_yticks()) == 3  # all, control, treatment
    assert inc.get_xlim()[1] > 3 * ab.get_xlim()[1]

    no_holdout = SimSpec(units=2000, seed=6)
    result = analyze(simulate_rows(no_holdout), no_holdout.arms(), timeline=False)
    assert len(lift_figure(result).axes) == 1


def test_names_from_the_data_are_escaped():
    """Experiment, variant and note text is shown as text: the template autoescapes it."""
    script = "<script>alert('x')</script>"
    spec = SimSpec(experiment=f"exp{script}", units=2000, seed=6,
                   weights={"control": 0.5, f"gnn{script}": 0.5})
    result = analyze(simulate_rows(spec), spec.arms(), experiment=spec.experiment,
                     timeline=False)
    result.notes.append(f"note {script}")
    html = render_html(result)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;") >= 5  # title, heading, note, arm rows, comparisons
