"""The A/B analysis (socialrec/evaluation/ab.py): the experiment file, a zero control, and
simulation studies whose right answer is known.

Simulation studies run on the simulator's in-memory rows (the same rows the event store gives
back, see tests/evaluation/test_simulate.py). Every seed is fixed, so the figures are
reproducible; tolerances are binomial (3 sd).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from socialrec.evaluation.ab import METRIC_BY_NAME, analyze, read_experiment
from socialrec.evaluation.ab_report import render_html, render_json
from socialrec.evaluation.ab_stats import compare_means, compare_proportions, power_two_proportions
from socialrec.evaluation.simulate import SimSpec, simulate_rows

CONVERSION = METRIC_BY_NAME["conversion"]
REVENUE = METRIC_BY_NAME["revenue_per_user"]


def binomial_band(p: float, n: int, sds: float = 3.0) -> tuple[float, float]:
    sd = math.sqrt(p * (1 - p) / n)
    return p - sds * sd, p + sds * sd


# -- known answers ---------------------------------------------------------------------------------

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


# -- simulation studies ----------------------------------------------------------------------------

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
