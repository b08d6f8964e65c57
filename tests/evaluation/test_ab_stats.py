"""The A/B statistics (socialrec/evaluation/ab_stats.py): known answers, and simulation studies
whose right answer is known.

Every seed is fixed, so the figures are reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from socialrec.evaluation.ab_stats import (
    compare_means,
    compare_proportions,
    compare_ratios,
    msprt,
    power_two_proportions,
    srm_check,
    wilson_interval,
)
from socialrec.evaluation.simulate import SimSpec, simulate_rows

# -- known answers ---------------------------------------------------------------------------------

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


def test_msprt_interval_contains_the_fixed_interval():
    e = compare_proportions(1300, 10_000, 1200, 10_000)
    p, lo, hi = msprt(e.abs_lift, e.se**2, 0.01**2)
    assert lo < e.abs_ci[0] and hi > e.abs_ci[1] and p > e.p_value


# -- simulation studies ----------------------------------------------------------------------------

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
