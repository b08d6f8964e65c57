"""Online A/B analysis: every variant compared with the control, from the event store.

:func:`analyze_store` reads one experiment's exposures and feedback, reduces them to one row per
(unit, user) (:mod:`socialrec.evaluation.ab_attribution`) and :func:`analyze` s those rows; the
tests and intervals are in :mod:`socialrec.evaluation.ab_stats`, the report in
:mod:`socialrec.evaluation.ab_report`.

Per arm, a rate is the share of rows with at least one event, revenue is per row (per user),
joins per share is a ratio of sums. When every unit has one row (the units are the users) the
rows are independent: rates get Newcombe's score interval of the difference with a pooled
two-proportion z-test, revenue Welch's t-test. When units are campaigns, users of one campaign
are correlated, so every metric is a ratio of per-unit sums and its variance comes from the
delta method, which treats the unit, not the user, as the independent draw; such a comparison
is flagged ``small_sample`` when an arm has fewer than 30 events.

Also: relative lift with an interval on the log of the ratio (never below -100%); a
sample-ratio-mismatch check against the configured weights that flags the whole report; CUPED
with the user's pre-period activity as covariate; optional always-valid intervals (mSPRT); and
push incrementality: pushed users against the held-out users of the same campaigns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from socialrec.evaluation.ab_attribution import PRE_PERIOD, unit_rows
from socialrec.evaluation.ab_stats import (
    ALPHA,
    SMALL_SAMPLE_EVENTS,
    SRM_THRESHOLD,
    Effect,
    SRMCheck,
    compare_means,
    compare_proportions,
    compare_ratios,
    cuped,
    msprt,
    relative_lift,
    srm_check,
)
from socialrec.features.events import HOLDOUT, EventStore
from socialrec.features.experiments import load_experiments


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
            effect.rel_lift, effect.rel_ci, effect.rel_note = relative_lift(
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
        srm = srm_check({str(k): int(v) for k, v in units.items()}, arms.weights,
                        "units per variant", srm_threshold)
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
