"""The A/B simulator: seeded, plants what it is told to, and its events read back as its rows."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from socialrec.evaluation.ab_attribution import ROW_COLUMNS, unit_rows
from socialrec.evaluation.simulate import SimSpec, simulate, simulate_events, simulate_rows
from socialrec.features.events import EventStore


def test_same_seed_same_world_other_seed_another():
    a = simulate_rows(SimSpec(units=3000, seed=4))
    pd.testing.assert_frame_equal(a, simulate_rows(SimSpec(units=3000, seed=4)))
    assert not a.equals(simulate_rows(SimSpec(units=3000, seed=5)))


def test_planted_effects_and_split_are_what_was_asked():
    spec = SimSpec(units=100_000, base_conversion=0.1, lift=0.2, revenue_lift=0.1,
                   actual_weights={"control": 0.6, "treatment": 0.4}, seed=1)
    started = time.process_time()
    rows = simulate_rows(spec)
    assert time.process_time() - started < 5.0  # vectorised: 100k units in well under that
    by_arm = rows.groupby("arm")
    share = by_arm.size() / len(rows)
    assert share["control"] == pytest.approx(0.6, abs=0.005)
    conv = by_arm.purchase.mean()
    se = np.sqrt(0.1 * 0.9 / by_arm.size())
    assert abs(conv["control"] - 0.1) < 4 * se["control"]
    assert abs(conv["treatment"] - 0.12) < 4 * se["treatment"]
    # revenue lift = (1 + conversion lift)(1 + order-value lift) - 1 = 0.32
    rpu = by_arm.revenue.mean()
    assert rpu["treatment"] / rpu["control"] - 1 == pytest.approx(spec.truth()["revenue_lift"],
                                                                   abs=0.06)
    assert (rows.first_purchase_ts.notna() == (rows.purchase > 0)).all()
    assert (rows.first_purchase_ts.dropna() > rows.first_ts[rows.purchase > 0]).all()


def test_pre_period_correlation_is_tunable():
    def corr(rho: float) -> float:
        rows = simulate_rows(SimSpec(units=30_000, heterogeneity=2.0, pre_correlation=rho,
                                     seed=2))
        return float(np.corrcoef(rows.pre_activity, rows.purchase)[0, 1])

    low, mid, high = corr(0.0), corr(0.5), corr(0.95)
    assert abs(low) < 0.02 < mid < high


def test_holdout_users_are_planted_per_campaign():
    spec = SimSpec(unit="campaign", units=50, users_per_campaign=200, holdout=0.1,
                   push_lift=1.0, seed=3)
    rows = simulate_rows(spec)
    held = rows.arm == "holdout"
    assert held.mean() == pytest.approx(0.1, abs=0.01)
    # held-out users keep their campaign's variant, and convert half as often
    assert (rows.unit_variant[held] == rows.groupby("unit_id").unit_variant.transform("first")
            [held]).all()
    ratio = rows.purchase[~held & (rows.unit_variant == "control")].mean() / \
        rows.purchase[held & (rows.unit_variant == "control")].mean()
    assert ratio == pytest.approx(2.0, rel=0.3)


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match=r"base_conversion \* \(1 \+ heterogeneity\)"):
        SimSpec(base_conversion=0.4, heterogeneity=2.0)
    with pytest.raises(ValueError, match="actual_weights must sum to 1"):
        SimSpec(actual_weights={"control": 0.5, "treatment": 0.6})
    with pytest.raises(ValueError, match="unit: expected 'user' or 'campaign'"):
        SimSpec(unit="team")


@pytest.mark.parametrize("unit", ["user", "campaign"])
def test_events_in_the_store_read_back_as_the_rows(unit, tmp_path):
    """The attribution in unit_rows (request + user, request alone, organic after exposure)
    rebuilds exactly the simulated rows from what the service would have logged."""
    spec = SimSpec(experiment=f"e_{unit}", unit=unit, units=600 if unit == "user" else 12,
                   users_per_campaign=50, holdout=0.2, lift=0.1, pre_correlation=0.6,
                   share_rate=0.3, seed=9)
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    # another experiment in the same store must not leak into this one
    simulate(SimSpec(experiment="other", units=200, seed=1), store)
    sim = simulate(spec, store)
    exposures = store.exposures(spec.experiment)
    rows = unit_rows(exposures, store.feedback())
    store.close()

    expected = sim.rows.sort_values(["unit_id", "user_id"]).reset_index(drop=True)
    got = rows.sort_values(["unit_id", "user_id"]).reset_index(drop=True)
    assert list(got.columns) == ROW_COLUMNS and len(got) == len(expected)
    assert got.purchase.sum() > 0 and got.pre_activity.sum() > 0 and (got.arm == "holdout").any()
    if unit == "user":
        assert got["join"].sum() > 0  # friends' joins reached the sharer through the request
    for col in ROW_COLUMNS:
        pd.testing.assert_series_equal(got[col], expected[col], check_dtype=False,
                                       check_names=False, obj=col)


def test_in_memory_events_match_the_rows_too():
    spec = SimSpec(units=2000, holdout=0.1, seed=11)
    rows, exposures, feedback = simulate_events(spec)
    assert set(exposures.endpoint) == {"recommend"} and feedback.event_id.is_unique
    again = unit_rows(exposures, feedback)
    assert again.sort_values("unit_id").purchase.tolist() == \
        rows.sort_values("unit_id").purchase.tolist()
