"""The statistics of the A/B analysis: effects of a treatment against a control, with intervals
and tests, and the sample-ratio-mismatch check.

- Rates of independent rows: Newcombe's score interval of the difference (built on scipy's
  Wilson intervals) with a pooled two-proportion z-test (:func:`compare_proportions`).
- Means of independent rows (revenue per user): Welch's t-test (:func:`compare_means`).
- Ratios of per-unit sums (campaign units, joins per share): the delta method (Deng, Knoblich &
  Lu 2018, "Applying the Delta Method in Metric Analytics"), which treats the unit, not the
  user, as the independent draw (:func:`compare_ratios`).
- Relative lift with an interval on the log of the ratio, never below -100%
  (:func:`relative_lift`).
- CUPED (Deng, Xu, Kohavi & Walker 2013, "Improving the Sensitivity of Online Controlled
  Experiments by Utilizing Pre-Experiment Data"): :func:`cuped`.
- Always-valid intervals from the mixture SPRT (Johari, Koomen, Pekelis & Walsh 2017, "Peeking
  at A/B Tests: Why It Matters, and What to Do About It", KDD; "Always Valid Inference", Oper.
  Res. 2022): :func:`msprt`.
- A sample-ratio-mismatch check, chi-square goodness of fit against the configured weights
  (:func:`srm_check`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
#: p-value under which the observed split is declared a sample-ratio mismatch. Strict on purpose:
#: the check runs on every report, and a real SRM gives p-values far below it (Fabijan et al.
#: 2019, "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments", KDD).
SRM_THRESHOLD = 0.001

#: Fewer events than this in either arm and a normal-approximation interval (delta method,
#: Welch) is not to be trusted: the comparison is flagged ``small_sample``.
SMALL_SAMPLE_EVENTS = 30


@dataclass
class Effect:
    """Treatment against control on one metric.

    ``rel_lift`` is treatment / control - 1; when it is undefined (a control of 0) it and
    ``rel_ci`` are NaN (null in JSON) and ``rel_note`` says why. ``events`` are the users with
    a nonzero outcome per arm (treatment, control) where they were counted; ``small_sample``
    marks a normal-approximation test with fewer than :data:`SMALL_SAMPLE_EVENTS` of them in an
    arm."""

    control: float
    treatment: float
    abs_lift: float
    abs_ci: tuple[float, float]
    rel_lift: float
    rel_ci: tuple[float, float]
    p_value: float
    se: float  # standard error of abs_lift (unpooled, normal approximation)
    test: str
    rel_note: str = ""
    events: tuple[int, int] | None = None
    small_sample: bool = False


@functools.lru_cache(maxsize=16)
def _z(alpha: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2))


def relative_lift(m_t: float, v_t: float, m_c: float, v_c: float,
                  alpha: float) -> tuple[float, tuple[float, float], str]:
    """Relative lift m_t/m_c - 1, its interval and, when either is undefined, the reason.

    The interval is the delta method on log(m_t / m_c), whose variance is v_t/m_t^2 + v_c/m_c^2
    for independent arms (``v`` are variances of the means), exponentiated: it is asymmetric and
    never goes below -100% (Katz et al. 1978, "Obtaining Confidence Intervals for the Risk Ratio
    in Cohort Studies", for rates; the same for means and ratio metrics)."""
    nan = (math.nan, math.nan)
    if m_c == 0:
        return math.nan, nan, "control is 0: relative lift undefined"
    rel = m_t / m_c - 1
    if m_c < 0 or m_t <= 0:
        return rel, nan, ("treatment is 0: no interval on the log scale" if m_t == 0 else
                          "a negative mean: no interval on the log scale")
    se = math.sqrt(v_t / m_t**2 + v_c / m_c**2)
    half = _z(alpha) * se
    return rel, (math.expm1(math.log1p(rel) - half), math.expm1(math.log1p(rel) + half)), ""


def _p_normal(diff: float, se: float) -> float:
    if se == 0 or not math.isfinite(se):
        return 1.0 if diff == 0 else (0.0 if math.isfinite(se) else math.nan)
    return float(2 * stats.norm.sf(abs(diff / se)))


def wilson_interval(x: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion x/n (Wilson 1927), no continuity
    correction: scipy's, which is exactly 0 (1) at x = 0 (x = n)."""
    ci = stats.binomtest(x, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    return float(ci.low), float(ci.high)


def newcombe_interval(x_t: int, n_t: int, x_c: int, n_c: int,
                      alpha: float = ALPHA) -> tuple[float, float]:
    """Interval of p_t - p_c by Newcombe's hybrid score method (Newcombe 1998, "Interval
    estimation for the difference between independent proportions: comparison of eleven
    methods", Stat. Med. 17:873-890, method 10): the two Wilson intervals combined by the
    square-and-add rule. Unlike the Wald interval it keeps its coverage with few events and
    never leaves [-1, 1]."""
    p_t, p_c = x_t / n_t, x_c / n_c
    l_t, u_t = wilson_interval(x_t, n_t, alpha)
    l_c, u_c = wilson_interval(x_c, n_c, alpha)
    diff = p_t - p_c
    return (diff - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2),
            diff + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2))


def compare_proportions(x_t: int, n_t: int, x_c: int, n_c: int,
                        alpha: float = ALPHA) -> Effect:
    """Difference of two independent proportions.

    Interval: Newcombe's hybrid score interval (:func:`newcombe_interval`), which holds its
    coverage with a handful of events where the Wald interval is too narrow. p-value: the
    two-proportion z-test with the standard error pooled under H0, which keeps its size in
    small samples better than the unpooled one. Neither is the inversion of the other, so at
    the margin (p close to alpha) the interval and the test can still disagree; both are the
    textbook small-sample choices. ``se`` is the unpooled standard error (the mSPRT and CUPED's
    variance reduction use it). Relative lift: see :func:`relative_lift`."""
    p_t, p_c = x_t / n_t, x_c / n_c
    diff = p_t - p_c
    v_t, v_c = p_t * (1 - p_t) / n_t, p_c * (1 - p_c) / n_c
    pooled = (x_t + x_c) / (n_t + n_c)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    rel, rel_ci, rel_note = relative_lift(p_t, v_t, p_c, v_c, alpha)
    return Effect(p_c, p_t, diff, newcombe_interval(x_t, n_t, x_c, n_c, alpha), rel, rel_ci,
                  _p_normal(diff, se0), math.sqrt(v_t + v_c),
                  "Newcombe interval, pooled z-test", rel_note, (x_t, x_c))


def compare_means(y_t: np.ndarray, y_c: np.ndarray, alpha: float = ALPHA) -> Effect:
    """Welch's t-test on per-unit values."""
    y_t, y_c = np.asarray(y_t, dtype=float), np.asarray(y_c, dtype=float)
    m_t, m_c = float(y_t.mean()), float(y_c.mean())
    v_t, v_c = float(y_t.var(ddof=1)) / len(y_t), float(y_c.var(ddof=1)) / len(y_c)
    diff = m_t - m_c
    rel, rel_ci, rel_note = relative_lift(m_t, v_t, m_c, v_c, alpha)
    if v_t + v_c == 0:  # both arms constant: nothing to test
        return Effect(m_c, m_t, diff, (diff, diff), rel, rel_ci, _p_normal(diff, 0.0), 0.0,
                      "Welch t", rel_note)
    res = stats.ttest_ind(y_t, y_c, equal_var=False)
    ci = res.confidence_interval(1 - alpha)
    return Effect(m_c, m_t, diff, (float(ci.low), float(ci.high)), rel, rel_ci,
                  float(res.pvalue), math.sqrt(v_t + v_c), "Welch t", rel_note)


def ratio_estimate(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """sum(num)/sum(den) over independent units and the delta-method variance of that ratio
    (Deng et al. 2018, eq. for the ratio of two means)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(num)
    mx, my = den.mean(), num.mean()
    if mx == 0:
        return math.nan, math.nan
    if n < 2:
        return my / mx, math.nan
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] / mx**2 - 2 * my * cov[0, 1] / mx**3 + my**2 * cov[1, 1] / mx**4) / n
    return float(my / mx), float(max(var, 0.0))


def compare_ratios(num_t: np.ndarray, den_t: np.ndarray, num_c: np.ndarray, den_c: np.ndarray,
                   alpha: float = ALPHA) -> Effect:
    """z-test of two ratio metrics, each a ratio of per-unit sums (delta method)."""
    r_t, v_t = ratio_estimate(num_t, den_t)
    r_c, v_c = ratio_estimate(num_c, den_c)
    diff, se = r_t - r_c, math.sqrt(v_t + v_c)
    z = _z(alpha)
    rel, rel_ci, rel_note = relative_lift(r_t, v_t, r_c, v_c, alpha)
    return Effect(r_c, r_t, diff, (diff - z * se, diff + z * se), rel, rel_ci,
                  _p_normal(diff, se), se, "delta-method z", rel_note)


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """CUPED-adjusted outcome y - theta (x - mean x), theta = cov(y, x) / var(x) over the pooled
    arms (Deng et al. 2013). Pooling keeps the adjustment the same for both arms, so the
    difference of means stays unbiased."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    var_x = x.var(ddof=1)
    if var_x == 0:
        return y, 0.0
    theta = float(np.cov(y, x, ddof=1)[0, 1] / var_x)
    return y - theta * (x - x.mean()), theta


def msprt(diff: np.ndarray | float, var: np.ndarray | float, tau2: np.ndarray | float,
          alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Always-valid p-value and (1 - alpha) interval of a difference estimate ``diff`` with
    variance ``var``, from the normal-mixture SPRT with mixing variance ``tau2`` (Johari et al.
    2017). Valid at any stopping time, however often one looks; vectorised over looks.

    Mixture likelihood ratio: sqrt(V / (V + tau2)) * exp(tau2 diff^2 / (2 V (V + tau2))).
    """
    d, v, t2 = (np.asarray(a, dtype=float) for a in (diff, var, tau2))
    log_lr = 0.5 * np.log(v / (v + t2)) + t2 * d**2 / (2 * v * (v + t2))
    p = np.minimum(1.0, np.exp(-log_lr))
    half = np.sqrt(v * (v + t2) / t2 * (np.log((v + t2) / v) - 2 * math.log(alpha)))
    return p, d - half, d + half


def power_two_proportions(p_c: float, p_t: float, n_c: float, n_t: float,
                          alpha: float = ALPHA) -> float:
    """Power of the two-sided two-proportion z-test (normal approximation)."""
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    shift, z = abs(p_t - p_c) / se, _z(alpha)
    return float(stats.norm.cdf(shift - z) + stats.norm.cdf(-shift - z))


@dataclass
class SRMCheck:
    """Chi-square goodness of fit of the observed split against the configured one."""

    what: str
    observed: dict[str, int]
    expected_share: dict[str, float]
    chi2: float
    p_value: float
    flagged: bool
    note: str = ""


def srm_check(observed: dict[str, int], expected_share: dict[str, float], what: str = "units",
              threshold: float = SRM_THRESHOLD) -> SRMCheck:
    """Flag a sample-ratio mismatch when the chi-square p-value is below ``threshold``.
    Arms with an expected share of 0 must not be observed at all."""
    names = list(expected_share)
    obs = np.array([observed.get(n, 0) for n in names], dtype=float)
    shares = np.array([expected_share[n] for n in names], dtype=float)
    unexpected = {k: v for k, v in observed.items() if k not in expected_share and v > 0}
    live = shares > 0
    total = obs.sum() + sum(unexpected.values())
    if unexpected or (obs[~live] > 0).any():
        extra = {**unexpected, **{n: int(o) for n, o, s in zip(names, obs, shares, strict=True)
                                  if s == 0 and o > 0}}
        return SRMCheck(what, {n: int(o) for n, o in zip(names, obs, strict=True)} | unexpected,
                        expected_share, math.inf, 0.0, True,
                        f"units in arms the configuration does not route to: {extra}")
    if total == 0 or live.sum() < 2:
        return SRMCheck(what, {n: int(o) for n, o in zip(names, obs, strict=True)},
                        expected_share, math.nan, math.nan, False, "nothing to compare")
    expected = shares[live] / shares[live].sum() * total
    res = stats.chisquare(obs[live], expected)
    note = "" if expected.min() >= 5 else "fewer than 5 expected units in an arm: weak check"
    return SRMCheck(what, {n: int(o) for n, o in zip(names, obs, strict=True)},
                    expected_share, float(res.statistic), float(res.pvalue),
                    bool(res.pvalue < threshold), note)

