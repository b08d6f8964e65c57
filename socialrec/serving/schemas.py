"""Request and response bodies of the service (pydantic). The OpenAPI schema at /docs.json is
generated from these; bodies that do not match them get a 400 naming the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from socialrec.features.events import FEEDBACK_EVENTS

#: Ids are strings of at most this many characters (the event store's column width).
ID_MAX = 128
#: No control characters (PostgreSQL text refuses NUL; none belongs in an id).
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
#: Upper bound of any ``k`` in the schema; the real bound (users / items of the model) is
#: checked against the model that answers, with a 422 naming ``k``.
K_MAX = 10_000_000
FEEDBACK_MAX_BATCH = 10_000
TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2100, 1, 1, tzinfo=UTC)

def id_field(default: Any = ..., description: str | None = None, max_length: int = ID_MAX
             ) -> Any:
    """A string id: 1..max_length characters, no control characters."""
    return Field(default, min_length=1, max_length=max_length, pattern=ID_PATTERN,
                 description=description)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- push ----------------------------------------------------------------------------------------

class FrequencyCapRule(Strict):
    max_pushes: int = Field(ge=1, le=1000, description="pushes allowed in the window")
    window_hours: int = Field(ge=1, le=24 * 366, description="length of the window, in hours")


class PushRules(Strict):
    exclude_buyers: bool = Field(True, description="drop users who already bought the item")
    respect_opt_out: bool = Field(True, description="drop users who did not opt in to pushes")
    frequency_cap: FrequencyCapRule | None = Field(
        None, description="drop users pushed max_pushes times in the last window_hours")
    holdout: bool = Field(True, description="drop the experiment's holdout users")


class Budget(Strict):
    """What a campaign may spend: a number of pushes, or money (each treatment costing its
    send cost plus its coupon times the chance the coupon is used)."""

    pushes: int | None = Field(None, ge=0, le=K_MAX, description="how many pushes at most")
    money: float | None = Field(None, ge=0.0, le=1e12, allow_inf_nan=False,
                                description="money to spend at most")
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="send cost per treatment, overriding the model's (money budgets)")

    @model_validator(mode="after")
    def _one_kind(self) -> Budget:
        if (self.pushes is None) == (self.money is None):
            raise ValueError("give exactly one of budget.pushes and budget.money")
        if any(not 0 <= c < 1e12 for c in self.costs.values()):
            raise ValueError("budget.costs: expected costs >= 0")
        return self


#: Products one campaign may name (``item_ids``, ``seed_items``).
CAMPAIGN_ITEMS_MAX = 1000
#: An id inside a list.
Id = Annotated[str, Field(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN)]


class PushRequest(Strict):
    item_id: str | None = id_field(
        None, description="the product to push (one of item_id, item_ids, category is needed); "
        "a product the model does not know is represented by its first feedback events, else "
        "by seed_items, else by item_category (the response's strategy says which)")
    item_ids: list[Id] | None = Field(
        None, min_length=1, max_length=CAMPAIGN_ITEMS_MAX,
        description="a campaign over several products (with item_id and category, if given): "
        "each user is ranked by their best product of the set, the rules applied once per user")
    category: str | None = id_field(
        None, description="a campaign over every product of this category the model knows (plus "
        "item_id / item_ids); also the category of new products in it unless item_category says")
    item_category: str | None = id_field(
        None, description="the category of the products the model does not know")
    seed_items: list[Id] | None = Field(
        None, min_length=1, max_length=CAMPAIGN_ITEMS_MAX,
        description="products the model knows that the new ones resemble")
    campaign_id: str | None = id_field(
        None, description="the campaign (the A/B unit and the holdout's key; when absent: "
        "item_id, else category:<category>, else items:<hash of item_ids>)")
    k: int = Field(100, ge=1, le=K_MAX, description="how many users (at most the model's users)")
    rules: PushRules = PushRules()
    objective: Literal["propensity", "uplift", "margin"] = Field(
        "propensity", description="rank by purchase propensity, by incremental conversions "
        "(uplift) or by incremental margin; uplift and margin need the bundle's uplift model")
    budget: Budget | None = Field(
        None, description="spend at most this (replaces k); uplift and margin allocate it "
        "across users and treatments")
    treatments: list[str] | None = Field(
        None, max_length=100, description="treatments allowed (default: all the model has)")
    item_price: float | None = Field(
        None, ge=0.0, le=1e9, allow_inf_nan=False,
        description="the item's price (> 0), for the margin objective (default: the mean order "
        "value the uplift model saw)")

    # > 0 checked here, not with gt=: BentoML's OpenAPI 3.0 schema takes no numeric
    # exclusiveMinimum (schemathesis refuses the whole schema)
    @field_validator("item_price")
    @classmethod
    def _positive_price(cls, price: float | None) -> float | None:
        if price is not None and price <= 0:
            raise ValueError("expected a price > 0")
        return price

    @model_validator(mode="after")
    def _names_products(self) -> PushRequest:
        if self.item_id is None and not self.item_ids and self.category is None:
            raise ValueError("give item_id, item_ids or category: the product(s) to push")
        return self


class Served(BaseModel):
    """What every response says about who answered."""

    request_id: str = Field(description="uuid4; feedback refers to it")
    experiment: str | None = Field(description="the A/B experiment routing this endpoint")
    variant: str = Field(description="the variant that answered ('default' without experiment)")
    model_version: str = Field(description="registry name/version (or dir:<hash>) of the model")
    strategy: str = Field(description="which retrieval or fallback produced the list")


class PushResponse(Served):
    item_id: str | None = Field(description="the product pushed (null: a campaign over several)")
    campaign_id: str
    users: list[str] = Field(description="user ids, best first")
    scores: list[float] = Field(description="the score of each user (same order)")
    removed: dict[str, int] = Field(
        description="users ranked above the last returned one that each rule removed")
    objective: str = Field("propensity", description="the objective that ranked the users")
    objective_note: str | None = Field(
        None, description="why another objective than the requested one answered")
    treatments: list[str] | None = Field(None, description="what each user is given")
    effects: list[float] | None = Field(
        None, description="estimated incremental chance to buy under that treatment")
    costs: list[float] | None = Field(None, description="expected cost of each user's treatment")
    reasons: list[str] | None = Field(None, description="a short reason a message can use")
    spent: float | None = Field(None, description="expected spend of the whole list")
    user_items: list[str] | None = Field(
        None, description="a campaign over several products: the product each user was ranked "
        "for (their best of the set)")
    new_items: dict[str, str] | None = Field(
        None, description="products the model does not know, and what represented each: "
        "foldin (its feedback events), seeds (seed_items) or category (its category's products)")


# -- share partners ------------------------------------------------------------------------------

class ShareRequest(Strict):
    user_id: str = id_field(description="the sharer")
    item_id: str = id_field(description="the product shared")
    k: int = Field(10, ge=1, le=1000)
    hops: Literal[1, 2] = Field(1, description="friends (1) or friends of friends too (2)")
    category: str | None = id_field(
        None, description="category of an item the model does not know (for the fallback)")


class SharePartner(BaseModel):
    user_id: str
    score: float
    hop: int
    parts: dict[str, float] = Field(
        description="raw values of the main features the score combines (serving/share.py)")
    reason: str


class ShareResponse(Served):
    partners: list[SharePartner]
    item_fallback: Literal["foldin", "category", "popularity"] | None = Field(
        description="how the item was represented when the model does not know it: its "
        "feedback folded in, its category's products, or the popularity-weighted mean")
    reason: str | None = Field(
        None, description="why the list is empty, or why the default ranking answered")


# -- recommend -----------------------------------------------------------------------------------

class RecommendRequest(Strict):
    user_id: str = id_field()
    k: int = Field(10, ge=1, le=K_MAX, description="how many items (at most the model's items)")
    exclude_seen: bool = Field(True, description="leave out items the user interacted with")


class RecommendResponse(Served):
    items: list[str] = Field(description="item ids, best first")
    scores: list[float] = Field(description="the score of each item (same order)")


# -- feedback ------------------------------------------------------------------------------------

class FeedbackEvent(Strict):
    event_id: str = id_field(description="unique per event; a repeat counts as a duplicate")
    request_id: str | None = id_field(None, max_length=64,
                                      description="the response this event followed")
    user_id: str = id_field()
    item_id: str | None = id_field(None)
    event: Literal[FEEDBACK_EVENTS]  # type: ignore[valid-type]
    ts: datetime | None = Field(None,
                                description="when it happened (UTC if no zone); now if absent")
    value: float = Field(0.0, ge=-1e12, le=1e12, allow_inf_nan=False,
                         description="revenue of a purchase")

    @field_validator("ts")
    @classmethod
    def _plausible_ts(cls, ts: datetime | None) -> datetime | None:
        if ts is None:
            return None
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
        if not TS_MIN <= ts <= TS_MAX:
            raise ValueError(f"expected a time between {TS_MIN:%Y-%m-%d} and {TS_MAX:%Y-%m-%d}")
        return ts.astimezone(UTC)


class FeedbackRequest(Strict):
    events: list[FeedbackEvent] = Field(min_length=1, max_length=FEEDBACK_MAX_BATCH)


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="events stored by this call")
    duplicates: int = Field(description="events already stored (or repeated in the batch)")


# -- admin and errors ----------------------------------------------------------------------------

class ReloadResponse(BaseModel):
    models: dict[str, str] = Field(description="alias -> model version now served")
    changed: list[str] = Field(description="aliases whose version changed with this reload")


class ErrorBody(BaseModel):
    error: str
    field: str | None = None
    expected: str | None = None
