"""Hillstrom in the uplift benchmark: the learner is chosen per arm by its Qini on a held-out
part of the training rows (the best candidate there, with a known answer on a planted effect),
the choice is recorded per split and shown in the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from socialrec.features.datasets.hillstrom import NAME
from socialrec.features.events import CONTROL
from socialrec.training.uplift_bench import (
    fit_effects,
    hillstrom_lines,
    run_hillstrom,
    select_hillstrom_learner,
)
from socialrec.training.uplift_config import LightGBMConfig, UpliftConfig

SMALL = LightGBMConfig(n_estimators=30, min_child_samples=40, num_leaves=4)


def config(**over) -> UpliftConfig:
    base = dict(treatments={"push": {}}, exploration=0.1, window_days=7, push_window_days=30,
                min_control_users=1, min_treated_users=1, min_campaign_control=1,
                margin_rate=0.5, unsubscribe_cost=1.0, n_components=0, validation_share=0.3,
                lightgbm=SMALL, effect_lightgbm=SMALL)
    return UpliftConfig(**(base | over))


@pytest.fixture(scope="module")
def planted():
    """Arm "a" adds 0.4 to the chance to visit where x0 > 0; arm "b" does nothing."""
    rng = np.random.default_rng(0)
    n = 6_000
    x = rng.standard_normal((n, 4)).astype(np.float32)
    treatment = rng.choice([CONTROL, "a", "b"], n)
    p = 0.2 + np.where((treatment == "a") & (x[:, 0] > 0), 0.4, 0.0)
    y = (rng.random(n) < p).astype(int)
    return x, treatment, y


def test_each_arm_gets_the_candidate_with_the_best_validation_qini(planted):
    x, treatment, y = planted
    cfg = config()
    strata = np.char.add(treatment.astype(str), y.astype(str))
    chosen, qini = select_hillstrom_learner(x, treatment, y, "visit", cfg, strata)
    assert set(qini) == {"t", "x", "r", "dr"} and set(chosen) == {"a", "b"}
    for arm, kind in chosen.items():
        assert qini[kind][arm] == max(q[arm] for q in qini.values())
    # the planted effect is found by every candidate and by the one chosen
    assert min(q["a"] for q in qini.values()) > 0.1
    effects = fit_effects(chosen["a"], "visit", x, treatment, y, cfg)
    tau = effects(x)[:, effects.arms.index("a")]
    assert tau[x[:, 0] > 0].mean() - tau[x[:, 0] <= 0].mean() > 0.2  # 0.4, shrunk by 30 trees


def test_a_set_learner_is_used_without_a_choice(planted):
    x, treatment, y = planted
    chosen, qini = select_hillstrom_learner(x, treatment, y, "visit", config(learner="x"),
                                            treatment)
    assert chosen == {"a": "x", "b": "x"} and qini == {}


@pytest.mark.parametrize("kind", ["t", "x", "r", "dr"])
def test_spend_learners_are_regressors_with_one_effect_per_arm(planted, kind):
    x, treatment, _ = planted
    spend = np.where((treatment == "a") & (x[:, 0] > 0), 5.0, 1.0) + x[:, 1]
    effects = fit_effects(kind, "spend", x, treatment, spend, config())
    tau = effects(x[:500])
    assert effects.arms == ["a", "b"] and tau.shape == (500, 2)
    assert "Regressor" in type(effects.learner).__name__ or kind == "dr"


def write_campaign(root: Path, n: int = 3_000) -> Path:
    """A small Hillstrom-shaped file: the women's e-mail raises visits of women buyers."""
    rng = np.random.default_rng(1)
    arms = rng.choice(["Mens E-Mail", "Womens E-Mail", "No E-Mail"], n)
    womens = rng.integers(0, 2, n)
    visit = rng.random(n) < 0.15 + 0.3 * ((arms == "Womens E-Mail") & (womens == 1))
    conversion = visit & (rng.random(n) < 0.2)
    spend = np.where(conversion, rng.uniform(10, 200, n), 0.0)
    rows = [f'{rng.integers(1, 13)},"2) $100 - $200",{rng.uniform(30, 500):.2f},'
            f"{1 - womens[i]},{womens[i]},Urban,{rng.integers(0, 2)},Web,{arms[i]},"
            f"{int(visit[i])},{int(conversion[i])},{spend[i]:.2f}" for i in range(n)]
    header = ("recency,history_segment,history,mens,womens,zip_code,newbie,channel,segment,"
              "visit,conversion,spend")
    (root / NAME).mkdir()
    (root / NAME / "hillstrom.csv").write_text("\r\n".join([header, *rows]) + "\r\n")
    return root


def test_the_choice_is_recorded_per_split_and_reported(tmp_path):
    results = run_hillstrom(write_campaign(tmp_path), config(candidates=["t", "dr"]), splits=2)
    assert [(r.arm, r.outcome) for r in results] == [
        ("Mens E-Mail", "visit"), ("Mens E-Mail", "spend"),
        ("Womens E-Mail", "visit"), ("Womens E-Mail", "spend")]
    for r in results:
        assert len(r.learners) == len(r.qini["uplift"]) == 2
        for kind, validation in zip(r.learners, r.validation_qini, strict=True):
            assert set(validation) == {"t", "dr"} and validation[kind] == max(validation.values())
    text = "\n".join(hillstrom_lines(results))
    assert "learner chosen (per split)" in text and "T-learner" not in text
    row = next(line for line in text.splitlines() if line.startswith("| Womens E-Mail | visit"))
    assert row.rstrip(" |").endswith(", ".join(k.upper() for k in results[2].learners))
