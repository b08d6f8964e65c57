"""A/B statistics: known answers, and simulation studies whose right answer is known.

Simulation studies run on the simulator's in-memory rows (the same rows the event store gives
back, see tests/evaluation/test_simulate.py); the report tests go through a real EventStore.
Every seed is fixed, so the figures are reproducible; tolerances are binomial (3 sd).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from socialrec.evaluation.ab import (
    METRIC_BY_NAME,
    analyze,
    analyze_store,
    compare_means,
    compare_proportions,
    compare_ratios,
    msprt,
    power_two_proportions,
    read_experiment,
    srm_check,
    wilson_interval,
)
from socialrec.evaluation.ab_report import (
    lift_figure,
    render_html,
    render_json,
    write_report,
)
from socialrec.evaluation.cli import ab_app
from socialrec.evaluation.simulate import SimSpec, simulate, simulate_rows
from socialrec.features.events import EventStore

CONVERSION = METRIC_BY_NAME["conversion"]
REVENUE = METRIC_BY_NAME["revenue_per_user"]


def binomial_band(p: float, n: int, sds: float = 3.0) -> tuple[float, float]:
    sd = math.sqrt(p * (1 - p) / n)
    return p - sds * sd, p + sds * sd


# -- known answers ------------------------------------------------------------------------------

def test_two_proportion_z_test_known_answer():
    e = compare_proportions(60, 500, 40, 500)
    # pooled p = 0.1, se0 = sqrt(0.1 * 0.9 * 2 / 500) = 0.018974, z = 0.04 / se0 = 2.1082
    assert e.abs_lift == pytest.approx(0.04)
    assert e.p_value == pytest.approx(0.03501, abs=1e-4)
    assert e.se == pytest.approx(math.sqrt(0.12 * 0.88 / 500 + 0.08 * 0.92 / 500))
    assert e.rel_lift == pytest.approx(0.5)
    # log scale: se(log RR)^2 = (1 - p_t) / x_t + (1 - p_c) / x_c (Katz), then exponentiated
    se_log = math.sqrt(0.88 / 60 + 0.92 / 40)
    assert e.rel_ci == pytest.approx((1.5 * math.exp(-1.959964 * se_log) - 1,
                                      1.5 * math.exp(1.959964 * se_log) - 1))
    assert e.events == (60, 40) and not e.small_sample


def test_newcombe_interval_textbook_value():
    # Newcombe (1998), Stat. Med. 17:873, Table II example (b): 56/70 vs 48/80, method 10
    e = compare_proportions(56, 70, 48, 80)
    assert e.abs_lift == pytest.approx(0.2)
    assert e.abs_ci == pytest.approx((0.0524, 0.3339), abs=5e-5)
    # Wilson intervals, by hand: 56/70 -> [0.6918, 0.8770] (Newcombe 1998, Table I)
    assert wilson_interval(56, 70) == pytest.approx((0.6918, 0.8770), abs=5e-5)
    # no events on either side: the interval is still a real interval around 0
    lo, hi = compare_proportions(0, 50, 0, 50).abs_ci
    assert -0.08 < lo < 0 < hi < 0.08


@pytest.mark.parametrize(("n_t", "n_c", "p"), [(200, 200, 0.02), (2000, 100, 0.01)])
def test_newcombe_interval_keeps_its_coverage_with_few_events(n_t, n_c, p):
    """1,000 A/A draws with a handful of events (the second like a 5% push holdout): the
    Newcombe interval covers the true difference 0 at least 93% of the time; the Wald interval
    it replaced does not in the unbalanced case."""
    rng = np.random.default_rng(n_t + n_c)
    newcombe = wald = 0
    for x_t, x_c in zip(rng.binomial(n_t, p, 1000), rng.binomial(n_c, p, 1000), strict=True):
        e = compare_proportions(int(x_t), n_t, int(x_c), n_c)
        newcombe += e.abs_ci[0] <= 0 <= e.abs_ci[1]
        wald += abs(e.abs_lift) <= 1.959964 * e.se
    print(f"n={n_t}/{n_c}, p={p}: coverage Newcombe {newcombe / 1000:.3f}, "
          f"Wald {wald / 1000:.3f}")
    assert newcombe / 1000 >= 0.93
    if n_c < n_t:
        assert wald / 1000 < 0.85


def test_relative_interval_never_goes_below_minus_100_percent():
    # the demo's "challenger vs holdout": 151 of 18,200 pushed against 1 of 938 held out; the
    # old delta-method interval was -851% .. +2,208%
    e = compare_proportions(151, 18_200, 1, 938)
    lo, hi = e.rel_ci
    assert -1 < lo < e.rel_lift < hi
    assert e.rel_lift == pytest.approx((151 / 18_200) / (1 / 938) - 1)
    # a tiny treatment rate against the control: the lift is near -100%, the bound above it
    lo, hi = compare_proportions(1, 1000, 10, 1000).rel_ci
    assert -1 < lo < -0.9 < hi < 0
    rng = np.random.default_rng(3)
    y_c = np.where(rng.random(300) < 0.01, 30.0, 0.0)  # ~3 buyers in the control
    assert compare_means(rng.gamma(2, 15, 300), y_c).rel_ci[0] > -1
    num_c = np.zeros(40)
    num_c[0] = 1.0  # one event over 40 campaigns
    r = compare_ratios(rng.poisson(1.0, 40).astype(float), np.full(40, 20.0), num_c,
                       np.full(40, 20.0))
    assert r.rel_ci[0] > -1 and r.rel_ci[1] > r.rel_lift


def test_zero_control_rate_gives_no_relative_lift_and_says_why():
    e = compare_proportions(5, 1000, 0, 100)
    assert math.isnan(e.rel_lift) and all(math.isnan(b) for b in e.rel_ci)
    assert "control is 0" in e.rel_note
    assert e.abs_lift == pytest.approx(0.005) and e.abs_ci[0] < 0.005 < e.abs_ci[1]
    assert math.isnan(compare_means(np.ones(10), np.zeros(10)).rel_lift)

    # through the analysis and the report: null in JSON, the reason in the HTML
    spec = SimSpec(unit="campaign", units=40, users_per_campaign=50, holdout=0.1, seed=2)
    rows = simulate_rows(spec)
    held = rows.arm == "holdout"
    rows.loc[held, ["purchase", "revenue"]] = 0
    rows.loc[held, "first_purchase_ts"] = pd.NaT
    result = analyze(rows, spec.arms())
    inc = next(i for i in result.incrementality if i.scope == "all")
    assert inc.conversion.rel_note and inc.incremental_conversions > 0
    data = json.loads(render_json(result))
    conv = data["incrementality"][0]["conversion"]
    assert conv["rel_lift"] is None and conv["rel_ci"] == [None, None]
    assert "control is 0: relative lift undefined" in render_html(result)


def test_welch_and_ratio_agree_when_every_unit_has_one_row():
    rng = np.random.default_rng(1)
    y_t, y_c = rng.gamma(2, 10, 3000), rng.gamma(2, 10.5, 2500)
    welch = compare_means(y_t, y_c)
    ratio = compare_ratios(y_t, np.ones_like(y_t), y_c, np.ones_like(y_c))
    assert ratio.abs_lift == pytest.approx(welch.abs_lift)
    # the delta method with denominators 1 is the unpooled z-test: same se up to ddof
    assert ratio.se == pytest.approx(welch.se, rel=1e-3)
    assert ratio.p_value == pytest.approx(welch.p_value, abs=2e-3)


def test_power_formula_known_answer():
    # 0.30 vs 0.315, 12,000 per arm: shift = 0.015 / 0.005957 = 2.518, power = Phi(0.558)
    assert power_two_proportions(0.30, 0.315, 12_000, 12_000) == pytest.approx(0.7116, abs=1e-3)


def test_srm_check_flags_only_a_real_mismatch():
    assert not srm_check({"a": 5020, "b": 4980}, {"a": 0.5, "b": 0.5}).flagged
    skewed = srm_check({"a": 5200, "b": 4800}, {"a": 0.5, "b": 0.5})
    assert skewed.flagged and skewed.chi2 == pytest.approx(16.0)
    assert srm_check({"a": 900, "b": 100, "c": 3}, {"a": 0.9, "b": 0.1}).flagged  # unrouted arm
    assert srm_check({"a": 900, "b": 100}, {"a": 0.9, "b": 0.1}).p_value == pytest.approx(1.0)


def test_read_experiment_reads_the_serving_file(tmp_path):
    path = tmp_path / "experiments.yaml"
    path.write_text(
        "experiments:\n"
        "  push:\n"
        "    salt: s1\n    unit: campaign\n    endpoints: [push_targets]\n"
        "    variants:\n"
        "      champion: {weight: 0.7, alias: champion}\n"
        "      gnn2: {weight: 0.3, alias: challenger}\n"
        "    holdout: {weight: 0.05}\n")
    arms = read_experiment(path, "push")
    assert arms.control == "champion" and arms.weights == {"champion": 0.7, "gnn2": 0.3}
    assert arms.holdout == 0.05 and arms.unit == "campaign"
    with pytest.raises(ValueError, match=r"experiments\.yaml: no experiment 'other'.*push"):
        read_experiment(path, "other")
    path.write_text("experiments:\n  push:\n    variants: {a: {alias: x}}\n")
    with pytest.raises(ValueError, match=r"experiments\.push\.variants\.a\.weight: Field required"):
        read_experiment(path, "push")


# -- simulation studies -------------------------------------------------------------------------

def test_aa_false_positive_rate_is_alpha():
    """500 A/A tests: each test rejects at its nominal 5% (3-7%), CUPED included."""
    n_sims = 500
    rejections = {"conversion": 0, "conversion_cuped": 0, "revenue": 0}
    covered = 0
    for seed in range(n_sims):
        spec = SimSpec(units=4000, base_conversion=0.2, heterogeneity=2.0, pre_correlation=0.7,
                       seed=10_000 + seed)
        result = analyze(simulate_rows(spec), spec.arms(), metrics=(CONVERSION, REVENUE),
                         timeline=False)
        conv = result.comparison("conversion", "treatment")
        rejections["conversion"] += conv.unadjusted.p_value < 0.05
        rejections["conversion_cuped"] += conv.effect.p_value < 0.05
        rejections["revenue"] += result.comparison("revenue_per_user", "treatment") \
            .unadjusted.p_value < 0.05
        covered += conv.effect.abs_ci[0] <= 0 <= conv.effect.abs_ci[1]
    rates = {k: v / n_sims for k, v in rejections.items()}
    print(f"A/A false-positive rates over {n_sims} tests: {rates}; "
          f"95% CI coverage {covered / n_sims:.3f}")
    for name, rate in rates.items():
        assert 0.03 <= rate <= 0.07, f"{name}: false-positive rate {rate:.3f}"
    assert covered / n_sims == pytest.approx(0.95, abs=0.02)


def test_planted_lift_is_detected_at_the_predicted_power():
    """A 5% relative conversion lift, 15,000 users: observed detection rate over 200 runs is
    within 3 binomial sd of the normal-approximation power."""
    n_sims, units, base, lift = 200, 15_000, 0.40, 0.05
    predicted = power_two_proportions(base, base * (1 + lift), units / 2, units / 2)
    detected = 0
    for seed in range(n_sims):
        spec = SimSpec(units=units, base_conversion=base, lift=lift, seed=20_000 + seed)
        c = analyze(simulate_rows(spec), spec.arms(), metrics=(CONVERSION,), use_cuped=False,
                    timeline=False).comparison("conversion", "treatment")
        detected += c.significant and c.effect.abs_lift > 0
    observed = detected / n_sims
    lo, hi = binomial_band(predicted, n_sims)
    print(f"power: predicted {predicted:.3f}, observed {observed:.3f} over {n_sims} runs")
    assert lo <= observed <= hi


def test_campaign_units_use_cluster_robust_variance():
    """Campaigns are the units and users within one are correlated: the delta method keeps the
    false-positive rate near 5%; a naive per-user z-test does not."""
    n_sims = 200
    delta = naive = 0
    for seed in range(n_sims):
        spec = SimSpec(unit="campaign", units=60, users_per_campaign=40, base_conversion=0.2,
                       campaign_sd=0.5, seed=30_000 + seed)
        rows = simulate_rows(spec)
        c = analyze(rows, spec.arms(), metrics=(CONVERSION,), timeline=False) \
            .comparison("conversion", "treatment")
        assert c.effect.test == "delta-method z"
        delta += c.effect.p_value < 0.05
        bought = rows.purchase > 0
        t, k = bought[rows.arm == "treatment"], bought[rows.arm == "control"]
        naive += compare_proportions(int(t.sum()), len(t), int(k.sum()), len(k)).p_value < 0.05
    print(f"campaign A/A: delta-method FPR {delta / n_sims:.3f}, naive FPR {naive / n_sims:.3f}")
    assert 0.015 <= delta / n_sims <= 0.095
    assert naive / n_sims >= 0.15


def test_msprt_stays_valid_when_peeking():
    """Looking 15 times at a growing A/A test: a fixed-horizon z-test rejects far more than 5%
    of the time at some look, the always-valid mSPRT p-value does not."""
    n_sims, looks = 200, np.arange(400, 6001, 400)
    naive = always_valid = 0
    for seed in range(n_sims):
        spec = SimSpec(units=6000, base_conversion=0.2, seed=40_000 + seed)
        rows = simulate_rows(spec).sort_values("first_ts")
        bought = (rows.purchase > 0).to_numpy()
        treated = (rows.arm == "treatment").to_numpy()
        x_t, n_t = np.cumsum(bought & treated)[looks - 1], np.cumsum(treated)[looks - 1]
        x_c, n_c = np.cumsum(bought & ~treated)[looks - 1], np.cumsum(~treated)[looks - 1]
        effects = [compare_proportions(*a) for a in zip(x_t, n_t, x_c, n_c, strict=True)]
        naive += any(e.p_value < 0.05 for e in effects)
        diff = np.array([e.abs_lift for e in effects])
        var = np.array([e.se**2 for e in effects])
        p, _, _ = msprt(diff, var, (0.1 * 0.2) ** 2)
        always_valid += bool((p < 0.05).any())
    print(f"peeking 15 times: naive FPR {naive / n_sims:.3f}, mSPRT {always_valid / n_sims:.3f}")
    assert naive / n_sims >= 0.12
    assert always_valid / n_sims <= 0.07


def test_msprt_interval_contains_the_fixed_interval():
    e = compare_proportions(1300, 10_000, 1200, 10_000)
    p, lo, hi = msprt(e.abs_lift, e.se**2, 0.01**2)
    assert lo < e.abs_ci[0] and hi > e.abs_ci[1] and p > e.p_value


def test_cuped_narrows_the_interval_only_when_the_pre_period_correlates():
    def widths(rho: float) -> tuple[float, float, float]:
        spec = SimSpec(units=40_000, base_conversion=0.1, heterogeneity=3.0, pre_events=20,
                       pre_correlation=rho, lift=0.05, seed=7)
        rows = simulate_rows(spec)
        on = analyze(rows, spec.arms(), metrics=(CONVERSION,)).comparison("conversion",
                                                                          "treatment")
        off = analyze(rows, spec.arms(), metrics=(CONVERSION,), use_cuped=False) \
            .comparison("conversion", "treatment")
        assert on.cuped and not off.cuped
        width = on.effect.abs_ci[1] - on.effect.abs_ci[0]
        return width / (off.effect.abs_ci[1] - off.effect.abs_ci[0]), on.variance_reduction, \
            on.effect.abs_lift - off.effect.abs_lift

    ratio, reduction, shift = widths(0.95)
    print(f"CUPED, correlated pre-period: CI width x{ratio:.3f}, variance -{100 * reduction:.1f}%")
    assert ratio < 0.95 and reduction > 0.09
    assert abs(shift) < 0.005  # the adjustment moves the estimate by well under its CI
    ratio, reduction, _ = widths(0.0)
    print(f"CUPED, unrelated pre-period: CI width x{ratio:.4f}")
    assert 0.99 < ratio < 1.005


# -- through the event store --------------------------------------------------------------------

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


def test_srm_flags_the_report(tmp_path):
    spec = SimSpec(experiment="skewed", units=20_000, actual_weights={"control": 0.52,
                                                                      "treatment": 0.48}, seed=3)
    result = analyze(simulate_rows(spec), spec.arms())
    assert result.srm.flagged and result.flagged and result.srm.p_value < 1e-5
    assert "Sample ratio mismatch" in render_html(result)

    balanced = SimSpec(experiment="balanced", units=20_000, seed=3)
    assert not analyze(simulate_rows(balanced), balanced.arms()).flagged

    held = SimSpec(unit="campaign", units=100, users_per_campaign=50, holdout=0.10,
                   actual_holdout=0.13, seed=3)
    result = analyze(simulate_rows(held), held.arms())
    assert not result.srm.flagged and result.holdout_srm.flagged and result.flagged


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
