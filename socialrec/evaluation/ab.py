"""Online A/B analysis: join exposures with feedback, compare every variant with the control.

The unit of analysis
--------------------
Exposures say which *unit* (the A/B randomisation unit: a user, or a campaign for pushes) got
which variant, and which *user* saw the list. :func:`unit_rows` reduces the event store to one
row per (unit, user) with what that user did afterwards. Feedback reaches a row

1. through its request id and user id (the pushed user opened the push, the requesting user
   clicked a recommendation);
2. through its request id alone when that request has one (unit, user) row (a friend joining a
   share counts for the sharer who asked for share partners);
3. without a request id (an organic event) when it comes after the row's first exposure: from
   the same user when the units are users, from the same user *and item* when the units are
   campaigns. This is the only way a held-out user, who never got a request id, can convert.

Per arm, a rate is the share of rows with at least one such event, revenue is per row (per
user), joins per share is a ratio of sums. When every unit has one row (the units are the users)
the rows are independent: rates get Newcombe's score interval of the difference with a pooled
two-proportion z-test, revenue Welch's t-test. When units are campaigns, users of one campaign
are correlated, so every metric is a ratio of per-unit sums and its variance comes from the
delta method (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics"), which
treats the unit, not the user, as the independent draw; such a comparison is flagged
``small_sample`` when an arm has fewer than 30 events.

Also: relative lift with an interval on the log of the ratio (never below -100%); a
sample-ratio-mismatch check (chi-square
goodness of fit against the configured weights) that flags the whole report; CUPED (Deng, Xu,
Kohavi & Walker 2013, "Improving the Sensitivity of Online Controlled Experiments by Utilizing
Pre-Experiment Data") with the user's pre-period activity as covariate; optional always-valid
intervals from the mixture SPRT (Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B Tests:
Why It Matters, and What to Do About It", KDD; "Always Valid Inference", Oper. Res. 2022); and
push incrementality: pushed users against the held-out users of the same campaigns.

Held-out users appear in the exposures with ``variant == "holdout"`` (features/events.HOLDOUT).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from socialrec.features.events import FEEDBACK_EVENTS, HOLDOUT, EventStore
from socialrec.features.experiments import load_experiments

ALPHA = 0.05
#: p-value under which the observed split is declared a sample-ratio mismatch. Strict on purpose:
#: the check runs on every report, and a real SRM gives p-values far below it (Fabijan et al.
#: 2019, "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments", KDD).
SRM_THRESHOLD = 0.001
#: Pre-period read for CUPED's covariate, before the experiment's first exposure.
PRE_PERIOD = timedelta(days=28)


@dataclass(frozen=True)
class Metric:
    """A per-arm metric: sum of ``numerator`` over rows / sum of ``denominator`` (rows if None).
    ``binary``: the numerator is "did it at least once" (a rate)."""

    name: str
    label: str
    numerator: str
    denominator: str | None = None
    binary: bool = False


METRICS: tuple[Metric, ...] = (
    Metric("push_open_rate", "push-open rate", "push_open", binary=True),
    Metric("click_through", "click-through (users who clicked)", "click", binary=True),
    Metric("conversion", "conversion (users who bought)", "purchase", binary=True),
    Metric("revenue_per_user", "revenue per user", "revenue"),
    Metric("share_rate", "share rate", "share", binary=True),
    Metric("joins_per_share", "joins per share", "join", denominator="share"),
)
METRIC_BY_NAME = {m.name: m for m in METRICS}

#: Columns of :func:`unit_rows` (and of the simulator's in-memory rows).
ROW_COLUMNS = ["unit_id", "user_id", "arm", "unit_variant", "exposures", "first_ts",
               *FEEDBACK_EVENTS, "revenue", "first_purchase_ts", "pre_activity"]


# -- the experiment definition -----------------------------------------------------------------

@dataclass(frozen=True)
class ExperimentArms:
    """What the analysis needs from configs/experiments.yaml: the control (the first variant),
    the configured weight of every variant (summing to 1) and the holdout share."""

    name: str
    weights: dict[str, float]
    holdout: float = 0.0
    unit: str = "user"

    @property
    def control(self) -> str:
        return next(iter(self.weights))


def read_experiment(path: str | Path, name: str) -> ExperimentArms:
    """Experiment ``name`` of an experiments file, validated by the same model serving routes
    with (features/experiments.py); the first variant is the control."""
    experiments = load_experiments(path).experiments
    if name not in experiments:
        raise ValueError(f"{path}: no experiment {name!r} under 'experiments' "
                         f"(found: {', '.join(experiments) or 'none'})")
    exp = experiments[name]
    weights = {v: spec.weight for v, spec in exp.variants.items()}
    return ExperimentArms(name, weights, exp.holdout.weight, exp.unit)


# -- events -> one row per (unit, user) --------------------------------------------------------

def unit_rows(exposures: pd.DataFrame, feedback: pd.DataFrame, *, start: datetime | None = None,
              end: datetime | None = None, pre_period: timedelta = PRE_PERIOD) -> pd.DataFrame:
    """One row per (unit, user) exposed in the experiment, with the feedback attributed to it
    (see the module docstring) in ``[start, end)`` and the user's number of feedback events in
    ``[start - pre_period, start)`` (``pre_activity``, CUPED's covariate).

    ``exposures`` are one experiment's (EventStore.exposures(experiment)); ``start`` defaults
    to the first exposure. ``arm`` is the unit's variant, or ``"holdout"`` for a held-out user;
    ``unit_variant`` is the unit's variant in both cases.
    """
    if exposures.empty:
        raise ValueError("no exposures: nothing to analyse (wrong experiment name or window?)")
    ex = exposures
    start = _utc(start if start is not None else ex.ts.min())
    end_ts = _utc(end) if end is not None else None

    unit_variant = ex[ex.variant != HOLDOUT].groupby("unit_id").variant.first()
    rows = ex.groupby(["unit_id", "user_id"], sort=True).agg(
        arm=("variant", "first"), exposures=("request_id", "size"), first_ts=("ts", "min"),
        item_id=("item_id", "first"),
    ).reset_index()
    rows["unit_variant"] = rows.unit_id.map(unit_variant)
    unit_is_user = bool((ex.unit_id == ex.user_id).all())

    in_window = (feedback.ts >= start) & (feedback.ts < end_ts if end_ts is not None else True)
    fb = feedback[in_window]
    attributed = _attribute(ex, fb, rows, unit_is_user)

    key = ["unit_id", "user_id"]
    counts = (attributed.groupby([*key, "event"]).size().unstack("event", fill_value=0)
              .reindex(columns=list(FEEDBACK_EVENTS), fill_value=0))
    purchases = attributed[attributed.event == "purchase"].groupby(key)
    outcome = counts.join(purchases.value.sum().rename("revenue")).join(
        purchases.ts.min().rename("first_purchase_ts"))
    rows = rows.merge(outcome, left_on=key, right_index=True, how="left")
    for event in FEEDBACK_EVENTS:
        rows[event] = rows[event].fillna(0).astype("int64")
    rows["revenue"] = rows["revenue"].fillna(0.0).astype("float64")

    pre = feedback[(feedback.ts >= start - pre_period) & (feedback.ts < start)]
    rows["pre_activity"] = rows.user_id.map(pre.groupby("user_id").size()).fillna(0).astype(
        "int64")
    return rows[ROW_COLUMNS]


def _utc(ts: datetime | pd.Timestamp) -> pd.Timestamp:
    """A UTC timestamp; a naive one is taken to be UTC already (as the event store does)."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _attribute(ex: pd.DataFrame, fb: pd.DataFrame, rows: pd.DataFrame,
               unit_is_user: bool) -> pd.DataFrame:
    """Feedback rows with the (unit_id, user_id) row each is attributed to."""
    cols = ["unit_id", "user_id", "event", "value", "ts"]
    linked = fb[fb.request_id.notna()]
    # 1. the exposed user acting on their own request
    pairs = ex[["request_id", "user_id", "unit_id"]].drop_duplicates(["request_id", "user_id"])
    by_pair = linked.merge(pairs, on=["request_id", "user_id"])
    # 2. someone else acting on a request that answered one (unit, user): a friend's join
    rest = linked[~linked.event_id.isin(by_pair.event_id)]
    per_request = ex.groupby("request_id").agg(unit_id=("unit_id", "first"),
                                               row_user=("user_id", "first"),
                                               n_users=("user_id", "nunique"),
                                               n_units=("unit_id", "nunique"))
    single = per_request[(per_request.n_users == 1) & (per_request.n_units == 1)]
    by_request = rest.merge(single[["unit_id", "row_user"]], left_on="request_id",
                            right_index=True)
    by_request = by_request.drop(columns="user_id").rename(columns={"row_user": "user_id"})
    # 3. organic events after the user's first exposure
    organic = fb[fb.request_id.isna()]
    on = ["user_id"] if unit_is_user else ["user_id", "item_id"]
    by_user = organic.merge(rows[["unit_id", "user_id", "item_id", "first_ts"]], on=on)
    by_user = by_user[by_user.ts >= by_user.first_ts]
    return pd.concat([by_pair[cols], by_request[cols], by_user[cols]], ignore_index=True)


# -- statistics --------------------------------------------------------------------------------

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


def _relative(m_t: float, v_t: float, m_c: float, v_c: float,
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
    correction."""
    z = _z(alpha)
    p = x / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


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
    variance reduction use it). Relative lift: see :func:`_relative`."""
    p_t, p_c = x_t / n_t, x_c / n_c
    diff = p_t - p_c
    v_t, v_c = p_t * (1 - p_t) / n_t, p_c * (1 - p_c) / n_c
    pooled = (x_t + x_c) / (n_t + n_c)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    rel, rel_ci, rel_note = _relative(p_t, v_t, p_c, v_c, alpha)
    return Effect(p_c, p_t, diff, newcombe_interval(x_t, n_t, x_c, n_c, alpha), rel, rel_ci,
                  _p_normal(diff, se0), math.sqrt(v_t + v_c),
                  "Newcombe interval, pooled z-test", rel_note, (x_t, x_c))


def compare_means(y_t: np.ndarray, y_c: np.ndarray, alpha: float = ALPHA) -> Effect:
    """Welch's t-test on per-unit values."""
    y_t, y_c = np.asarray(y_t, dtype=float), np.asarray(y_c, dtype=float)
    m_t, m_c = float(y_t.mean()), float(y_c.mean())
    v_t, v_c = float(y_t.var(ddof=1)) / len(y_t), float(y_c.var(ddof=1)) / len(y_c)
    diff = m_t - m_c
    rel, rel_ci, rel_note = _relative(m_t, v_t, m_c, v_c, alpha)
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
    rel, rel_ci, rel_note = _relative(r_t, v_t, r_c, v_c, alpha)
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


# -- the analysis ------------------------------------------------------------------------------

@dataclass
class Comparison:
    metric: str
    variant: str
    effect: Effect
    significant: bool
    cuped: bool = False
    theta: float | None = None
    variance_reduction: float | None = None  # 1 - var(CUPED diff) / var(plain diff)
    unadjusted: Effect | None = None  # the plain comparison, when CUPED was applied
    seq_p_value: float | None = None
    seq_ci: tuple[float, float] | None = None


@dataclass
class ArmSummary:
    name: str
    units: int
    users: int
    exposures: int
    metrics: dict[str, float]


@dataclass
class Incrementality:
    """Pushed users against held-out users of the same campaigns."""

    scope: str  # "all" or a variant name
    pushed_users: int
    holdout_users: int
    conversion: Effect
    revenue: Effect
    incremental_conversions: float
    incremental_conversions_ci: tuple[float, float]
    incremental_revenue: float
    incremental_revenue_ci: tuple[float, float]
    cuped: bool = False


@dataclass
class ABResult:
    experiment: str
    control: str
    alpha: float
    start: str
    end: str
    unit_is_user: bool
    cuped_enabled: bool
    cuped_available: bool  # pre-period data exist
    arms: list[ArmSummary]
    comparisons: list[Comparison]
    srm: SRMCheck | None
    holdout_srm: SRMCheck | None
    incrementality: list[Incrementality]
    cumulative: dict[str, Any]
    mixed_units: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        """True when a sample-ratio mismatch makes every number here suspect."""
        return bool((self.srm and self.srm.flagged) or (self.holdout_srm and
                                                       self.holdout_srm.flagged))

    def comparison(self, metric: str, variant: str) -> Comparison:
        for c in self.comparisons:
            if c.metric == metric and c.variant == variant:
                return c
        raise KeyError(f"no comparison of {metric!r} for variant {variant!r}")

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({**asdict(self), "flagged": self.flagged})


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, datetime | pd.Timestamp):
        return obj.isoformat()
    return obj


def _metric_values(rows: pd.DataFrame, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    num = rows[metric.numerator].to_numpy(dtype=float)
    if metric.binary:
        num = (num > 0).astype(float)
    den = (np.ones(len(rows)) if metric.denominator is None
           else rows[metric.denominator].to_numpy(dtype=float))
    return num, den


def _unit_sums(rows: pd.DataFrame, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    num, den = _metric_values(rows, metric)
    codes, _ = pd.factorize(rows.unit_id)
    return np.bincount(codes, weights=num), np.bincount(codes, weights=den)


def _events(rows: pd.DataFrame, metric: Metric) -> int:
    """Rows with a nonzero outcome: users who converted, bought, shared, ..."""
    return int((rows[metric.numerator].to_numpy() > 0).sum())


def arm_value(rows: pd.DataFrame, metric: Metric) -> float:
    num, den = _metric_values(rows, metric)
    return float(num.sum() / den.sum()) if den.sum() > 0 else math.nan


def compare_metric(metric: Metric, treat: pd.DataFrame, ctrl: pd.DataFrame, *,
                   independent_rows: bool, alpha: float = ALPHA, use_cuped: bool = False,
                   sequential: bool = False, tau_rel: float = 0.1, variant: str = "") -> Comparison:
    """Compare one metric between two sets of rows (see the module docstring for which test)."""
    if independent_rows and metric.denominator is None:
        y_t, _ = _metric_values(treat, metric)
        y_c, _ = _metric_values(ctrl, metric)
        if metric.binary:
            plain = compare_proportions(int(y_t.sum()), len(y_t), int(y_c.sum()), len(y_c), alpha)
        else:
            plain = compare_means(y_t, y_c, alpha)
        effect, theta, reduction, unadjusted = plain, None, None, None
        x = np.concatenate([treat.pre_activity.to_numpy(float), ctrl.pre_activity.to_numpy(float)])
        if use_cuped and x.var() > 0:
            adjusted, theta = cuped(np.concatenate([y_t, y_c]), x)
            effect = compare_means(adjusted[: len(y_t)], adjusted[len(y_t):], alpha)
            # Report lifts against the unadjusted control mean: CUPED changes the variance, not
            # what is estimated.
            effect.control, effect.treatment = plain.control, plain.control + effect.abs_lift
            v_t, v_c = (adjusted[: len(y_t)].var(ddof=1) / len(y_t),
                        adjusted[len(y_t):].var(ddof=1) / len(y_c))
            effect.rel_lift, effect.rel_ci, effect.rel_note = _relative(
                effect.treatment, v_t, plain.control, v_c, alpha)
            reduction = 1 - effect.se**2 / plain.se**2 if plain.se > 0 else None
            unadjusted = plain
    else:
        n_t, d_t = _unit_sums(treat, metric)
        n_c, d_c = _unit_sums(ctrl, metric)
        effect, theta, reduction, unadjusted = compare_ratios(n_t, d_t, n_c, d_c, alpha), None, \
            None, None
    if effect.events is None:
        effect.events = (_events(treat, metric), _events(ctrl, metric))
    # Newcombe's interval is built for few events; the normal approximations (the delta method
    # on campaign sums, Welch's t, CUPED) are not, so they say when they have too few.
    effect.small_sample = (not effect.test.startswith("Newcombe")
                           and min(effect.events) < SMALL_SAMPLE_EVENTS)
    comp = Comparison(metric.name, variant, effect, bool(effect.p_value < alpha),
                      cuped=unadjusted is not None, theta=theta, variance_reduction=reduction,
                      unadjusted=unadjusted)
    if sequential and effect.se > 0 and math.isfinite(effect.se):
        # Mixing scale: an effect of tau_rel of the control mean is a priori plausible.
        tau = tau_rel * abs(effect.control) if effect.control else effect.se
        p, lo, hi = msprt(effect.abs_lift, effect.se**2, tau**2, alpha)
        comp.seq_p_value, comp.seq_ci = float(p), (float(lo), float(hi))
    return comp


def analyze(rows: pd.DataFrame, arms: ExperimentArms | None = None, *, experiment: str = "",
            control: str | None = None, alpha: float = ALPHA, use_cuped: bool = True,
            sequential: bool = False, tau_rel: float = 0.1,
            srm_threshold: float = SRM_THRESHOLD, metrics: tuple[Metric, ...] = METRICS,
            start: datetime | None = None, end: datetime | None = None,
            timeline: bool = True) -> ABResult:
    """Analyse :func:`unit_rows` output: per-arm summaries, every variant against the control,
    the SRM checks (when ``arms`` gives the configured weights), push incrementality (when
    held-out users exist) and, with ``timeline``, cumulative conversion over time."""
    notes: list[str] = []
    parts = {str(name): part for name, part in rows.groupby("arm", sort=False)}
    held = parts.get(HOLDOUT, rows.iloc[:0])
    pushed = rows[rows.arm != HOLDOUT] if len(held) else rows
    seen = [a for a in parts if a != HOLDOUT]
    variants = [v for v in (arms.weights if arms else sorted(seen)) if v in parts]
    variants += sorted(set(seen) - set(variants))
    control = control or (arms.control if arms else ("control" if "control" in parts
                                                     else variants[0]))
    if control not in seen:
        raise ValueError(f"control variant {control!r} has no exposed units "
                         f"(variants seen: {sorted(seen)})")
    unit_is_user = bool((rows.unit_id == rows.user_id).all())
    independent = unit_is_user or not rows.unit_id.duplicated().any()
    if not independent:
        notes.append("several users per unit (campaign units): every metric is a ratio of "
                     "per-unit sums with delta-method variance; CUPED is off for A/B comparisons")
    mixed = int(pushed.groupby("unit_id").arm.nunique().gt(1).sum()) if not unit_is_user else 0
    if mixed:
        notes.append(f"{mixed} units were seen in more than one variant; each counts in its "
                     "first variant")
    cuped_available = bool(rows.pre_activity.var() > 0) if len(rows) > 1 else False

    arm_names = variants + ([HOLDOUT] if len(held) else [])
    summaries = [ArmSummary(name, int(parts[name].unit_id.nunique()), len(parts[name]),
                            int(parts[name].exposures.sum()),
                            {m.name: arm_value(parts[name], m) for m in metrics})
                 for name in arm_names]
    comparisons = [
        compare_metric(m, parts[v], parts[control], independent_rows=independent,
                       alpha=alpha, use_cuped=use_cuped, sequential=sequential, tau_rel=tau_rel,
                       variant=v)
        for v in variants if v != control for m in metrics
    ]

    srm = holdout_srm = None
    if arms is not None:
        units = pushed.groupby("unit_id").arm.first().value_counts().to_dict()
        srm = srm_check({k: int(v) for k, v in units.items()}, arms.weights, "units per variant",
                        srm_threshold)
        if arms.holdout > 0 or len(held):
            holdout_srm = srm_check({"pushed": len(pushed), HOLDOUT: len(held)},
                                    {"pushed": 1 - arms.holdout, HOLDOUT: arms.holdout},
                                    "held-out users", srm_threshold)
            if arms.holdout > 0 and not len(held):
                holdout_srm.note = ("a holdout is configured but no held-out users were logged "
                                    "(exposures with variant 'holdout')")
    else:
        notes.append("no configured weights: the sample-ratio-mismatch check did not run")

    incrementality = (_incrementality(pushed, held, unit_is_user, alpha, use_cuped)
                      if len(held) else [])
    return ABResult(
        experiment=experiment, control=control, alpha=alpha,
        start=str(start if start is not None else rows.first_ts.min()),
        end=str(end if end is not None else ""), unit_is_user=unit_is_user,
        cuped_enabled=use_cuped, cuped_available=cuped_available, arms=summaries,
        comparisons=comparisons, srm=srm, holdout_srm=holdout_srm,
        incrementality=incrementality,
        cumulative=cumulative_conversion(rows, end) if timeline else {},
        mixed_units=mixed, notes=notes)


def _incrementality(pushed: pd.DataFrame, held: pd.DataFrame, unit_is_user: bool,
                    alpha: float, use_cuped: bool) -> list[Incrementality]:
    """Pushed vs held-out users: of the same campaigns when campaigns are the units (users are
    held out at random within a campaign, so they are independent draws), all of them when
    users are."""
    if not unit_is_user:
        pushed = pushed[pushed.unit_id.isin(held.unit_id)]
    scopes = [("all", pushed, held)]
    if not unit_is_user:
        for variant in sorted(pushed.arm.unique()):
            units = set(pushed.unit_id[pushed.arm == variant])
            scopes.append((variant, pushed[pushed.unit_id.isin(units)],
                           held[held.unit_id.isin(units)]))
    out = []
    for scope, p, h in scopes:
        if len(p) < 2 or len(h) < 2:
            continue
        conv = compare_metric(METRIC_BY_NAME["conversion"], p, h, independent_rows=True,
                              alpha=alpha, use_cuped=use_cuped)
        rev = compare_metric(METRIC_BY_NAME["revenue_per_user"], p, h, independent_rows=True,
                             alpha=alpha, use_cuped=use_cuped)
        n = len(p)
        ce, re = conv.effect, rev.effect
        out.append(Incrementality(
            scope, n, len(h), ce, re, ce.abs_lift * n, (ce.abs_ci[0] * n, ce.abs_ci[1] * n),
            re.abs_lift * n, (re.abs_ci[0] * n, re.abs_ci[1] * n), cuped=conv.cuped))
    return out


def cumulative_conversion(rows: pd.DataFrame, end: datetime | None = None,
                          points: int = 40) -> dict[str, Any]:
    """Per arm, at evenly spaced times: users who bought by then / users exposed by then."""
    t0 = rows.first_ts.min()
    t1 = max(rows.first_ts.max(), rows.first_purchase_ts.max()
             if rows.first_purchase_ts.notna().any() else t0)
    if end is not None:
        t1 = min(t1, pd.Timestamp(end))
    times = pd.date_range(t0, t1 if t1 > t0 else t0 + pd.Timedelta(seconds=1), periods=points)
    grid = _ns(times)
    rates: dict[str, list[float]] = {}
    for arm, part in rows.groupby("arm", sort=True):
        exposed = np.sort(_ns(part.first_ts))
        bought = np.sort(_ns(part.first_purchase_ts.dropna()))
        n_exposed = np.searchsorted(exposed, grid, side="right")
        n_bought = np.searchsorted(bought, grid, side="right")
        with np.errstate(invalid="ignore", divide="ignore"):
            rates[str(arm)] = np.where(n_exposed > 0, n_bought / np.maximum(n_exposed, 1),
                                       np.nan).tolist()
    return {"times": [t.isoformat() for t in times], "rates": rates}


def _ns(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    return pd.DatetimeIndex(ts).as_unit("ns").asi8


def analyze_store(store: EventStore, experiment: str, *, arms: ExperimentArms | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  pre_period: timedelta = PRE_PERIOD, **kwargs: Any) -> tuple[ABResult,
                                                                               pd.DataFrame]:
    """Read one experiment from the event store and :func:`analyze` it; also returns the rows."""
    exposures = store.exposures(experiment, since=since, until=until)
    if exposures.empty:
        raise ValueError(f"experiment {experiment!r}: no exposures in the event store "
                         f"{store.url} between {since or 'the start'} and {until or 'now'}")
    start = since or exposures.ts.min().to_pydatetime()
    feedback = store.feedback(since=start - pre_period, until=until)
    rows = unit_rows(exposures, feedback, start=start, end=until, pre_period=pre_period)
    result = analyze(rows, arms, experiment=experiment, start=start, end=until, **kwargs)
    return result, rows
