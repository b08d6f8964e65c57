"""A/B assignment: proportions, stability across processes, ramps that only move units in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from socialrec.features.experiments import (
    N_BUCKETS,
    Experiment,
    bucket,
    buckets,
    in_holdout,
    load_experiments,
)

REPO = Path(__file__).resolve().parents[2]
IDS = [f"user-{i}" for i in range(100_000)]


def experiment(**weights: float) -> Experiment:
    return Experiment(salt="s1", unit="user", endpoints=["recommend"],
                      variants={n: {"weight": w, "alias": n} for n, w in weights.items()})


@pytest.fixture(scope="module")
def id_buckets() -> np.ndarray:
    return buckets("s1", IDS)


def assign_all(exp: Experiment, bks: np.ndarray) -> np.ndarray:
    lookup = np.asarray([exp.variant_of_bucket(b) for b in range(N_BUCKETS)], dtype=object)
    return lookup[bks]


def test_shares_within_one_percent_of_weights(id_buckets):
    exp = experiment(control=0.5, a=0.3, b=0.2)
    got = assign_all(exp, id_buckets)
    for name, w in [("control", 0.5), ("a", 0.3), ("b", 0.2)]:
        assert abs(np.mean(got == name) - w) < 0.01, name
    # assign() is what the service calls; it agrees with the bucket lookup
    assert [exp.assign(u) for u in IDS[:500]] == list(got[:500])


def test_buckets_are_the_same_in_another_process():
    code = ("import json, sys; from socialrec.features.experiments import bucket; "
            "print(json.dumps([bucket('s1', f'user-{i}') for i in range(2000)]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # hash() would differ; blake2b must not
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert json.loads(out) == [bucket("s1", f"user-{i}") for i in range(2000)]
    # the salt matters: another salt is another randomisation
    assert np.mean(buckets("s1", IDS[:2000]) == buckets("s2", IDS[:2000])) < 0.01


def test_raising_a_treatment_only_moves_units_into_it(id_buckets):
    before = assign_all(experiment(control=0.8, a=0.1, b=0.1), id_buckets)
    after = assign_all(experiment(control=0.6, a=0.3, b=0.1), id_buckets)
    moved = before != after
    assert moved.any()
    assert set(after[moved]) == {"a"}  # every unit that moved went into a ...
    assert set(before[moved]) == {"control"}  # ... and came from the control, never from b
    assert np.all(after[before == "a"] == "a")


def test_ramp_steps_are_monotone(id_buckets):
    previous = None
    for w in (0.0, 0.01, 0.05, 0.2, 0.5, 1.0):
        now = assign_all(experiment(control=1.0 - w, treatment=w), id_buckets)
        if previous is not None:
            assert np.all(now[previous == "treatment"] == "treatment")
            assert set(previous[previous != now]) <= {"control"}
        previous = now
    assert np.all(previous == "treatment")


def test_ramp_down_only_moves_units_into_the_control(id_buckets):
    before = assign_all(experiment(control=0.4, a=0.3, b=0.3), id_buckets)
    after = assign_all(experiment(control=0.7, a=0.1, b=0.2), id_buckets)
    moved = before != after
    assert set(after[moved]) == {"control"}


def test_holdout_share_and_independence_across_campaigns():
    users = IDS[:50_000]
    h1 = in_holdout("s1", 0.1, "campaign-1", users)
    h2 = in_holdout("s1", 0.1, "campaign-2", users)
    assert abs(h1.mean() - 0.1) < 0.01
    assert abs((h1 & h2).mean() - 0.01) < 0.005  # independent draws per campaign
    assert not in_holdout("s1", 0.0, "campaign-1", users).any()


@pytest.mark.parametrize(("variants", "message"), [
    ({"control": {"weight": 0.5, "alias": "x"}}, "sum to 1"),
    ({"control": {"weight": 0.4, "alias": "x"}, "a": {"weight": 0.3, "alias": "y", "offset": 0},
      "b": {"weight": 0.3, "alias": "z", "offset": 1000}}, "overlap"),
    ({"control": {"weight": 0.5, "alias": "x"},
      "a": {"weight": 0.5, "alias": "y", "offset": 9000}}, "run past"),
])
def test_bad_layouts_are_refused_with_the_reason(variants, message):
    with pytest.raises(ValueError, match=message):
        Experiment(salt="s", unit="user", endpoints=["recommend"], variants=variants)


def test_push_experiments_randomise_campaigns():
    with pytest.raises(ValueError, match="unit must be 'campaign'"):
        Experiment(salt="s", unit="user", endpoints=["push_targets"],
                   variants={"control": {"weight": 1.0, "alias": "champion"}})


def test_load_experiments_names_the_file_and_key(tmp_path):
    bad = tmp_path / "exp.yaml"
    bad.write_text("experiments:\n  e:\n    salt: s\n    unit: team\n    endpoints: [recommend]\n"
                   "    variants: {control: {weight: 1, alias: champion}}\n")
    with pytest.raises(ValueError, match=r"exp\.yaml: experiments\.e\.unit"):
        load_experiments(bad)


def test_the_repository_experiments_file_is_valid():
    exps = load_experiments(REPO / "configs" / "experiments.yaml")
    assert exps.for_endpoint("push_targets") is not None
    assert "champion" in exps.aliases()
