"""The uplift model serving scores with: a T-learner's LightGBM boosters, without pickle.

Training (socialrec/training/uplift.py) fits causalml's ``BaseTClassifier`` with a LightGBM base
learner, once per outcome (``conversion``: the user bought the campaign's item in the window;
``unsubscribe``: the user opted out of pushes in the window). A T-learner is one model of the
outcome on control users and one per treatment on that treatment's users; its effect estimate is
the difference of their probabilities. Each booster is saved as LightGBM's own text model file,
beside a JSON manifest, in the bundle's ``uplift/`` directory::

    uplift/manifest.json                 format, features, projection, treatments and their
                                         costs, margin settings, training counts and metrics
    uplift/conversion_control.txt        P(conversion | features, no push)
    uplift/conversion_<treatment>.txt    P(conversion | features, treatment)
    uplift/unsubscribe_*.txt             the same for unsubscribing (or a constant in the
                                         manifest when training saw no such event in an arm)

:meth:`UpliftModel.predict_effects` recomposes the learner's prediction from those files (a
test checks it equals causalml's ``predict`` on the same rows). What each treatment is worth
for an objective (conversions, margin) and what it costs are derived here too, so serving and
the benchmarks agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import lightgbm as lgb
import numpy as np

FORMAT = "socialrec-uplift/1"
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


class Effects(NamedTuple):
    """Per user (rows) and treatment (columns)."""

    p_control: np.ndarray  # (n,) P(conversion) with no push
    p_treated: np.ndarray  # (n, T) P(conversion) under each treatment
    conversion: np.ndarray  # (n, T) incremental conversion probability
    unsubscribe: np.ndarray  # (n, T) incremental unsubscribe probability
    margin: np.ndarray  # (n, T) incremental margin, money (see UpliftModel.effects)


class UpliftModel:
    """A saved T-learner (see the module docstring); ``models[outcome][arm]`` is a LightGBM
    booster or a constant probability."""

    def __init__(self, manifest: dict[str, Any],
                 models: dict[str, dict[str, lgb.Booster | float]]) -> None:
        if manifest.get("format") != FORMAT:
            raise ValueError(f"uplift manifest format {manifest.get('format')!r}; this code "
                             f"reads {FORMAT!r}")
        self.manifest = manifest
        self.models = models
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

    @property
    def treatment_names(self) -> list[str]:
        return [t.name for t in self.treatments]

    # -- prediction ----------------------------------------------------------------------------

    def _probability(self, outcome: str, arm: str, x: np.ndarray) -> np.ndarray:
        model = self.models[outcome][arm]
        if isinstance(model, lgb.Booster):
            return np.asarray(model.predict(x), dtype=np.float64)
        return np.full(len(x), float(model))

    def probabilities(self, outcome: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(P(outcome | control), P(outcome | each treatment))`` of the rows of ``x``."""
        if x.shape[1] != len(self.features):
            raise ValueError(f"features: expected {len(self.features)} columns, got {x.shape[1]}")
        control = self._probability(outcome, CONTROL, x)
        treated = np.column_stack([self._probability(outcome, t, x)
                                   for t in self.treatment_names])
        return control, treated

    def predict_effects(self, x: np.ndarray, outcome: str = "conversion") -> np.ndarray:
        """The T-learner's effect estimate, (n, T): what causalml's ``predict`` returns."""
        control, treated = self.probabilities(outcome, x)
        return treated - control[:, None]

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
        files: dict[str, dict[str, Any]] = {}
        for outcome, arms in self.models.items():
            files[outcome] = {}
            for arm, model in arms.items():
                if isinstance(model, lgb.Booster):
                    name = f"{outcome}_{arm}.txt"
                    model.save_model(str(path / name))
                    files[outcome][arm] = {"file": name}
                else:
                    files[outcome][arm] = {"constant": float(model)}
        manifest = {**self.manifest, "models": files}
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> UpliftModel:
        path = Path(path)
        manifest = json.loads((path / MANIFEST).read_text())
        models: dict[str, dict[str, lgb.Booster | float]] = {}
        for outcome, arms in manifest["models"].items():
            models[outcome] = {
                arm: (lgb.Booster(model_file=str(path / spec["file"])) if "file" in spec
                      else float(spec["constant"]))
                for arm, spec in arms.items()}
        return cls(manifest, models)


def treatment_names_valid(names: list[str]) -> None:
    """Treatment names become file names and JSON keys: refuse anything else."""
    for name in names:
        if not name or name == CONTROL or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"treatment name {name!r}: expected letters, digits, '-' or '_', "
                             f"and not {CONTROL!r}")
