"""``uplift:``: the treatments a campaign can give, how an uplift model is trained from the
service's own experiments, and the minimum evidence it needs (socialrec/training/uplift.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from socialrec.models.uplift import treatment_names_valid

LearnerName = Literal["t", "x", "r", "dr"]
#: The learners ``learner: auto`` chooses among (training/uplift.py ``LEARNERS``).
CANDIDATES: tuple[LearnerName, ...] = ("t", "x", "r", "dr")


class TreatmentConfig(BaseModel):
    """One treatment: a push, possibly with a coupon."""

    model_config = ConfigDict(extra="forbid")

    coupon: float = Field(0.0, ge=0.0)  # coupon value, paid when the user buys with it
    send_cost: float = Field(0.0, ge=0.0)  # money per message sent


class LightGBMConfig(BaseModel):
    """A LightGBM base learner (LightGBM's scikit-learn parameters)."""

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(200, ge=1)
    learning_rate: float = Field(0.05, gt=0.0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(200, ge=1)
    subsample: float = Field(0.8, gt=0.0, le=1.0)
    subsample_freq: int = Field(1, ge=0)
    colsample_bytree: float = Field(0.8, gt=0.0, le=1.0)
    reg_lambda: float = Field(1.0, ge=0.0)


class UpliftConfig(BaseModel):
    """``uplift:`` (commented in configs/defaults.yaml)."""

    model_config = ConfigDict(extra="forbid")

    treatments: dict[str, TreatmentConfig]
    exploration: float = Field(ge=0.0, lt=1.0)
    window_days: float = Field(gt=0.0)
    push_window_days: float = Field(gt=0.0)
    min_control_users: int = Field(ge=1)
    min_treated_users: int = Field(ge=1)
    min_campaign_control: int = Field(ge=1)
    margin_rate: float = Field(ge=0.0, le=1.0)
    unsubscribe_cost: float = Field(ge=0.0)
    n_components: int = Field(ge=0)
    validation_share: float = Field(gt=0.0, lt=1.0)
    learner: Literal["auto", "t", "x", "r", "dr"] = "auto"
    candidates: list[LearnerName] = Field(default_factory=lambda: list(CANDIDATES),
                                          min_length=1)
    lightgbm: LightGBMConfig = LightGBMConfig()  # outcome classifiers
    effect_lightgbm: LightGBMConfig = LightGBMConfig(  # effect regressors (X, R, DR)
        n_estimators=100, num_leaves=7, min_child_samples=1000)
    seed: int = 0

    @field_validator("treatments")
    @classmethod
    def _names(cls, treatments: dict[str, TreatmentConfig]) -> dict[str, TreatmentConfig]:
        if not treatments:
            raise ValueError("at least one treatment (e.g. push: {coupon: 0.0})")
        treatment_names_valid(list(treatments))
        return treatments
