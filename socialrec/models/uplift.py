"""The uplift model serving scores with: a meta-learner's LightGBM boosters, without pickle.

Training (socialrec/training/uplift.py) fits one of causalml's meta-learners with LightGBM base
learners once per outcome (``conversion``: the user bought the campaign's item in the window;
``unsubscribe``: the user opted out of pushes in the window) and keeps what predicting needs:

- ``P(outcome | control)``: a LightGBM classifier of the control users (or a constant);
- each treatment's effect: a weighted sum of LightGBM models' predictions plus a constant.
  A T-learner's effect is ``P(y | t) - P(y | control)`` (two classifiers, weights +1 and -1);
  an X-learner's is ``p tau_c + (1 - p) tau_t`` (two effect regressors, ``p`` the treated
  share it was fitted with); an R-learner's is its effect regressor; a DR-learner's the mean of
  its three cross-fitted effect regressors.

Each booster is saved as LightGBM's own text model file, beside a JSON manifest, in the bundle's
``uplift/`` directory::

    uplift/manifest.json       format, learner, features, projection, treatments and their
                               costs, margin settings, training counts and metrics, and for
                               each outcome the terms of the control probability and effects
    uplift/<booster>.txt       one LightGBM model each (names listed in the manifest)

:meth:`UpliftModel.predict_effects` recomposes the learner's prediction from those files (tests
check it equals causalml's ``predict`` on the same rows, for each learner). What each treatment
is worth for an objective (conversions, margin) and what it costs are derived here too, so
serving and the benchmarks agree. A manifest of the first format (``socialrec-uplift/1``: one
probability model per arm, a T-learner) is read as the same T-learner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import lightgbm as lgb
import numpy as np

FORMAT = "socialrec-uplift/2"
FORMAT_V1 = "socialrec-uplift/1"
MANIFEST = "manifest.json"
OUTCOMES = ("conversion", "unsubscribe")
CONTROL = "control"
Objective = Literal["uplift", "margin"]


@dataclass(frozen=True)
class Treatment:
    """A way to contact a user: a push, possibly with a coupon.

    ``coupon`` is the coupon's value, paid by the shop when the user buys with it;
    ``send_cost`` is what sending the message costs.
    """

    name: str
    coupon: float = 0.0
    send_cost: float = 0.0


@dataclass(frozen=True)
class Combination:
    """``constant + sum(weight * booster(x))`` over ``terms`` of (booster name, weight)."""

    terms: tuple[tuple[str, float], ...] = ()
    constant: float = 0.0

    def __call__(self, predict: dict[str, np.ndarray], n: int) -> np.ndarray:
        out = np.full(n, self.constant, dtype=np.float64)
        for name, weight in self.terms:
            out += weight * predict[name]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"terms": [[name, weight] for name, weight in self.terms],
                "constant": self.constant}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Combination:
        return cls(tuple((str(n), float(w)) for n, w in d.get("terms", [])),
                   float(d.get("constant", 0.0)))


@dataclass(frozen=True)
class OutcomeModel:
    """One outcome: its probability without a push, and each treatment's effect on it."""

    control: Combination
    effects: dict[str, Combination] = field(default_factory=dict)

    def boosters(self) -> set[str]:
        return {n for c in (self.control, *self.effects.values()) for n, _ in c.terms}

    def to_dict(self) -> dict[str, Any]:
        return {"control": self.control.to_dict(),
                "effects": {t: c.to_dict() for t, c in self.effects.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutcomeModel:
        return cls(Combination.from_dict(d["control"]),
                   {t: Combination.from_dict(c) for t, c in d["effects"].items()})


def t_learner_outcome(models: dict[str, lgb.Booster | float], outcome: str,
                      treatments: list[str]) -> tuple[OutcomeModel, dict[str, lgb.Booster]]:
    """A T-learner as an :class:`OutcomeModel`: ``models[arm]`` is a probability booster or a
    constant per arm (control and each treatment); boosters are named ``<outcome>_<arm>``."""
    boosters: dict[str, lgb.Booster] = {}

    def combination(arm: str, sign: float) -> Combination:
        model = models[arm]
        if isinstance(model, lgb.Booster):
            boosters[f"{outcome}_{arm}"] = model
            return Combination(((f"{outcome}_{arm}", sign),))
        return Combination((), sign * float(model))

    control = combination(CONTROL, 1.0)
    effects = {}
    for t in treatments:
        treated, minus = combination(t, 1.0), combination(CONTROL, -1.0)
        effects[t] = Combination(treated.terms + minus.terms, treated.constant + minus.constant)
    return OutcomeModel(control, effects), boosters


class Effects(NamedTuple):
    """Per user (rows) and treatment (columns)."""

    p_control: np.ndarray  # (n,) P(conversion) with no push
    p_treated: np.ndarray  # (n, T) P(conversion) under each treatment
    conversion: np.ndarray  # (n, T) incremental conversion probability
    unsubscribe: np.ndarray  # (n, T) incremental unsubscribe probability
    margin: np.ndarray  # (n, T) incremental margin, money (see UpliftModel.effects)


class UpliftModel:
    """A saved meta-learner (see the module docstring): per outcome an :class:`OutcomeModel`
    whose terms name ``boosters``."""

    def __init__(self, manifest: dict[str, Any], outcomes: dict[str, OutcomeModel],
                 boosters: dict[str, lgb.Booster]) -> None:
        if manifest.get("format") != FORMAT:
            raise ValueError(f"uplift manifest format {manifest.get('format')!r}; this code "
                             f"reads {FORMAT!r} and {FORMAT_V1!r}")
        missing = sorted(set().union(*(o.boosters() for o in outcomes.values())) - set(boosters))
        if missing:
            raise ValueError(f"uplift model: no booster named {missing}")
        self.manifest = manifest
        self.outcomes = outcomes
        self.boosters = boosters
        self.features: list[str] = list(manifest["features"])
        k = int(manifest["n_components"])
        flat = np.asarray(manifest["projection"], dtype=np.float32)
        self.projection = flat.reshape(len(flat) // k, k) if k else np.zeros((0, 0), np.float32)
        self.treatments = [Treatment(t["name"], float(t["coupon"]), float(t["send_cost"]))
                           for t in manifest["treatments"]]
        self.margin_rate = float(manifest["margin_rate"])
        self.unsubscribe_cost = float(manifest["unsubscribe_cost"])
        self.mean_price = float(manifest["mean_price"])
        self.push_window_days = float(manifest["push_window_days"])

    @classmethod
    def from_arms(cls, manifest: dict[str, Any],
                  models: dict[str, dict[str, lgb.Booster | float]]) -> UpliftModel:
        """A T-learner from one probability model (or constant) per outcome and arm."""
        names = [t["name"] for t in manifest["treatments"]]
        outcomes: dict[str, OutcomeModel] = {}
        boosters: dict[str, lgb.Booster] = {}
        for outcome, arms in models.items():
            outcomes[outcome], found = t_learner_outcome(arms, outcome, names)
            boosters |= found
        return cls({**manifest, "format": FORMAT}, outcomes, boosters)

    @property
    def treatment_names(self) -> list[str]:
        return [t.name for t in self.treatments]

    # -- prediction ----------------------------------------------------------------------------

    def _predictions(self, outcome: str, x: np.ndarray) -> dict[str, np.ndarray]:
        if x.shape[1] != len(self.features):
            raise ValueError(f"features: expected {len(self.features)} columns, got {x.shape[1]}")
        return {name: np.asarray(self.boosters[name].predict(x), dtype=np.float64)
                for name in sorted(self.outcomes[outcome].boosters())}

    def predict_effects(self, x: np.ndarray, outcome: str = "conversion") -> np.ndarray:
        """Each treatment's estimated effect on ``outcome``, (n, T): what the learner's
        ``predict`` returns (causalml's, for the learner trained)."""
        model = self.outcomes[outcome]
        predict = self._predictions(outcome, x)
        return np.column_stack([model.effects[t](predict, len(x))
                                for t in self.treatment_names])

    def probabilities(self, outcome: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(P(outcome | control), P(outcome | each treatment))`` of the rows of ``x``: the
        control probability, and it plus each effect, kept within [0, 1]."""
        model = self.outcomes[outcome]
        predict = self._predictions(outcome, x)
        control = np.clip(model.control(predict, len(x)), 0.0, 1.0)
        effects = np.column_stack([model.effects[t](predict, len(x))
                                   for t in self.treatment_names])
        return control, np.clip(control[:, None] + effects, 0.0, 1.0)

    def effects(self, x: np.ndarray, price: float | np.ndarray | None = None) -> Effects:
        """Every treatment's incremental conversion, unsubscribe and margin.

        Margin of a conversion is ``price * margin_rate`` less the coupon it used; the
        incremental margin of treatment ``t`` is ``p_t (m - coupon_t) - p_0 m`` minus
        ``unsubscribe_cost`` per incremental unsubscribe. ``price`` defaults to the mean order
        value seen in training.
        """
        p0, pt = self.probabilities("conversion", x)
        u0, ut = self.probabilities("unsubscribe", x)
        m = np.asarray(self.mean_price if price is None else price, dtype=np.float64
                       ) * self.margin_rate
        m_col = m[:, None] if m.ndim else m
        coupons = np.array([t.coupon for t in self.treatments])
        margin = (pt * (m_col - coupons) - (p0 * m)[:, None]
                  - self.unsubscribe_cost * (ut - u0[:, None]))
        return Effects(p0, pt, pt - p0[:, None], ut - u0[:, None], margin)

    def costs(self, p_treated: np.ndarray, money: bool,
              send_costs: dict[str, float] | None = None) -> np.ndarray:
        """(n, T) cost of each treatment: one push each (``money=False``), or the expected
        spend: the send cost plus the coupon times the chance it is used (the user buys)."""
        if not money:
            return np.ones_like(p_treated)
        sends = send_costs or {}
        send = np.array([sends.get(t.name, t.send_cost) for t in self.treatments])
        coupons = np.array([t.coupon for t in self.treatments])
        return send[None, :] + coupons[None, :] * p_treated

    def value(self, effects: Effects, objective: Objective) -> np.ndarray:
        """What each treatment is worth under ``objective``: incremental conversions
        (``uplift``) or incremental margin (``margin``)."""
        return effects.conversion if objective == "uplift" else effects.margin

    # -- files ---------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(path / f"{name}.txt"))
        manifest = {**self.manifest, "boosters": sorted(self.boosters),
                    "outcomes": {o: m.to_dict() for o, m in self.outcomes.items()}}
        manifest.pop("models", None)
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> UpliftModel:
        path = Path(path)
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") == FORMAT_V1:
            models: dict[str, dict[str, lgb.Booster | float]] = {
                outcome: {arm: (lgb.Booster(model_file=str(path / spec["file"]))
                                if "file" in spec else float(spec["constant"]))
                          for arm, spec in arms.items()}
                for outcome, arms in manifest.pop("models").items()}
            return cls.from_arms(manifest, models)
        boosters = {}
        for name in manifest.get("boosters", []):
            _booster_name_valid(name)
            boosters[name] = lgb.Booster(model_file=str(path / f"{name}.txt"))
        outcomes = {o: OutcomeModel.from_dict(d) for o, d in manifest["outcomes"].items()}
        return cls(manifest, outcomes, boosters)


def _booster_name_valid(name: str) -> None:
    """A booster name is a file name in the model's directory: nothing that leaves it."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"uplift manifest: booster name {name!r} is not a plain file name")


def treatment_names_valid(names: list[str]) -> None:
    """Treatment names become file names and JSON keys: refuse anything else."""
    for name in names:
        if not name or name == CONTROL or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"treatment name {name!r}: expected letters, digits, '-' or '_', "
                             f"and not {CONTROL!r}")
