"""The BentoML service: precision push, share partners, recommendations, feedback.

Run it with ``bentoml serve socialrec.serving.service:SocialRec`` (one worker; each request
runs on one of ``SOCIALREC_THREADS`` threads). Configuration, all from the environment:

=========================  =========================================================================
SOCIALREC_BUNDLE_DIR       serve this bundle directory for every alias (no registry)
SOCIALREC_MODEL            registered model name (default ``socialrec-synthetic``)
SOCIALREC_ALIAS            alias of endpoints no experiment routes (default ``champion``)
SOCIALREC_ALIAS_*          an endpoint's own alias instead: ``SOCIALREC_ALIAS_PUSH_TARGETS``,
                           ``..._RECOMMEND``, ``..._SHARE_PARTNERS`` (the best model per task);
                           an experiment variant naming the default alias gets the endpoint's
MLFLOW_TRACKING_URI        the registry (MLflow's own default when unset)
SOCIALREC_CACHE_DIR        where registry downloads are kept (default: <tmp>/socialrec-bundles)
SOCIALREC_EVENT_STORE      event store URL (default ``sqlite:///events.db``)
SOCIALREC_EXPERIMENTS      experiments YAML (configs/experiments.yaml); none: no A/B routing
SOCIALREC_ADMIN_TOKEN      token of ``POST /admin/reload`` (unset: the endpoint answers 403)
SOCIALREC_POLL_SECONDS     how often aliases are re-resolved (default 30; 0 turns polling off)
SOCIALREC_THREADS          request threads (default 8)
SOCIALREC_RETRY_SECONDS    until ready, how often an unanswering model source or event store is
                           tried again (default 2)
SOCIALREC_COMMIT_PUSHES    ``1``: a push replies once its exposures are committed, so that a
                           frequency cap on any replica sharing the event store counts it (adds the
                           writer's commit, ~20-30 ms, to each push); default ``0``: exact within
                           one replica, which flushes before it counts
SOCIALREC_FOLDIN_*          fold-in of new products and users from feedback: how often other
                           replicas' feedback is read (``..._SECONDS``, default 2), how far back a
                           new model version reads (``..._DAYS``, 30): serving/foldin_state.py
=========================  =========================================================================

Every response carries ``request_id`` (uuid4), ``experiment``, ``variant``, ``model_version`` and
``strategy``; every served list is logged as exposures by a writer process beside the worker
(serving/exposures.py); feedback is committed before its reply. Bad requests get a
4xx with ``{"error", "field", "expected"}`` (unknown ids 404, ``k`` beyond the model 422, schema
violations 400 from BentoML's validation), never a 500.

New products and users without a retrain: /push_targets takes products the model has not seen
(represented by their feedback events folded in, else seed items, else their category) and
campaigns over several products or a category (serving/campaigns.py); /recommend folds a new
user in from their first events (serving/fallback.py); feedback reaches the fold-in state of this
replica before the reply, other replicas within ``SOCIALREC_FOLDIN_SECONDS``
(serving/foldin_state.py, models/foldin.py).

Fallbacks: an unknown user on /recommend gets popular items (``strategy: popular``); a user
known only through the social graph gets their friends' favourites; an unknown item on
/share_partners is represented by its feedback folded in, else by its category (if the request
names one the model knows), else by the popularity-weighted mean item, and the response's
``item_fallback`` says which. Share
partners are ranked by the bundle's learned share ranker (``strategy: share_ranker``); a bundle
without one, or without share history, ranks friends by tie strength then affinity
(``strategy: share_default:tie_strength,affinity``, and ``reason`` says why): serving/share.py.

Readiness: the service starts even when its model source (registry) or event store does not
answer, and tries them again every ``SOCIALREC_RETRY_SECONDS``; until every alias has a bundle and
the event store answered, ``/readyz`` answers 503 and every endpoint a JSON 503 saying what it
waits for. At start-up without a registry, each alias's last version resolved through the same
``SOCIALREC_CACHE_DIR`` is served if its download is cached (serving/loader.py). Later, a registry
that stops answering (a poll or ``/admin/reload`` failing) never empties the service: it keeps
serving what it has, and ``GET /status`` and one WARNING line say so (serving/health.py,
serving/http.py); an event store that stops answering turns the requests that need it into 503s.

Never imports torch: numpy, FAISS, scipy, pydantic, BentoML and the MLflow client only.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import bentoml
import faiss
import numpy as np
from bentoml.validators import ContentType
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from starlette.responses import JSONResponse, StreamingResponse

from socialrec.features.events import HOLDOUT, EventStore, Feedback
from socialrec.features.experiments import (
    ROUTED_ENDPOINTS,
    Experiment,
    Experiments,
    load_experiments,
)
from socialrec.serving.campaigns import CampaignError, Push, campaign_id, choose_users, resolve
from socialrec.serving.exposures import ExposureLog, ServedList
from socialrec.serving.fallback import cold_start, has_interactions
from socialrec.serving.foldin_state import FoldIns
from socialrec.serving.health import Dependency, one_line
from socialrec.serving.http import add_http_edges, log_client_errors_on_one_line
from socialrec.serving.loader import BundleSource, LoadedModel, ModelSet, source_from_env
from socialrec.serving.push_objective import BudgetError, campaign_products, check_budget, plan
from socialrec.serving.retrieval import recommend_items
from socialrec.serving.rules import CampaignHoldout
from socialrec.serving.schemas import (
    K_MAX,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    PushRequest,
    PushResponse,
    RecommendRequest,
    RecommendResponse,
    ReloadResponse,
    SharePartner,
    ShareRequest,
    ShareResponse,
)
from socialrec.serving.share import item_vector, rank_partners, share_model

log = logging.getLogger("socialrec.serving")

RULE_NAMES = ("opt_out", "exclude_buyers", "holdout", "frequency_cap")
#: Users per chunk of the NDJSON stream.
STREAM_CHUNK = 5000


class RequestError(Exception):
    """A request the service refuses: becomes a JSON 4xx naming the field."""

    def __init__(self, status: int, error: str, field: str | None = None,
                 expected: str | None = None) -> None:
        super().__init__(error)
        self.status, self.body = status, ErrorBody(error=error, field=field, expected=expected)


F = TypeVar("F", bound=Callable[..., Any])


def json_errors(func: F) -> F:
    """Turn a :class:`RequestError` into its JSON response (BentoML's own wraps messages in a
    list and hides 401/403 reasons); an event store that does not answer into a 503."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:  # connection-level: retrying may work
            log.warning("event store error, answered 503: %s", one_line(exc))
            error = RequestError(503, f"event store unavailable, retry later: {one_line(exc)}")
        except RequestError as exc:
            error = exc
        ctx = kwargs.get("ctx")
        if ctx is not None:  # BentoML applies the context's status to any response
            ctx.response.status_code = error.status
        return JSONResponse(error.body.model_dump(), status_code=error.status)

    return wrapper  # type: ignore[return-value]


def endpoint_alias_variable(endpoint: str) -> str:
    """The environment variable naming ``endpoint``'s own alias: SOCIALREC_ALIAS_PUSH_TARGETS."""
    return f"SOCIALREC_ALIAS_{endpoint.upper()}"


@dataclass(frozen=True)
class Settings:
    event_store: str
    experiments: str | None
    default_alias: str
    admin_token: str | None
    poll_seconds: float
    retry_seconds: float
    commit_pushes: bool
    endpoint_aliases: dict[str, str] = field(default_factory=dict)  # endpoint -> its own alias

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            event_store=env.get("SOCIALREC_EVENT_STORE", "sqlite:///events.db"),
            experiments=env.get("SOCIALREC_EXPERIMENTS") or None,
            default_alias=env.get("SOCIALREC_ALIAS", "champion"),
            admin_token=env.get("SOCIALREC_ADMIN_TOKEN") or None,
            poll_seconds=float(env.get("SOCIALREC_POLL_SECONDS", "30")),
            retry_seconds=float(env.get("SOCIALREC_RETRY_SECONDS", "2")),
            commit_pushes=env.get("SOCIALREC_COMMIT_PUSHES", "0") == "1",
            endpoint_aliases={e: alias for e in ROUTED_ENDPOINTS
                              if (alias := env.get(endpoint_alias_variable(e)))},
        )

    def alias_for(self, endpoint: str, alias: str | None = None) -> str:
        """The alias ``endpoint`` follows when no experiment routes it; with ``alias`` (an
        experiment variant's), that alias, except that the shared default stands for the
        endpoint's own (so experiments whose control is ``champion`` keep serving each task's
        best model)."""
        if alias is not None and alias != self.default_alias:
            return alias
        return self.endpoint_aliases.get(endpoint, self.default_alias)


@dataclass(frozen=True)
class Snapshot:
    """What one request uses from start to end (a reload replaces the whole snapshot)."""

    experiments: Experiments
    models: dict[str, LoadedModel]


@dataclass(frozen=True)
class Route:
    experiment: str | None
    exp: Experiment | None
    variant: str
    model: LoadedModel
    unit_id: str

    def served(self, strategy: str) -> dict[str, Any]:
        return {"request_id": str(uuid.uuid4()), "experiment": self.experiment,
                "variant": self.variant, "model_version": self.model.version,
                "strategy": strategy}


def _now() -> datetime:
    return datetime.now(UTC)


_omp = threading.local()


def _one_openmp_thread() -> None:
    """Parallelism comes from request threads: each FAISS search runs on one OpenMP thread (more
    would oversubscribe the cores: a 20k-user flat search went from 0.3 to 12 ms on 2 cores).
    OpenMP's setting is per calling thread, so each request thread sets it once."""
    if not getattr(_omp, "done", False):
        faiss.omp_set_num_threads(1)
        _omp.done = True


#: BentoML options of the service, shared with the Bento's (serving/bento_service.py).
SERVICE_OPTIONS: dict[str, Any] = {
    "workers": 1,
    "threads": int(os.environ.get("SOCIALREC_THREADS", "8")),
    "traffic": {"timeout": 300},
}


@bentoml.service(**SERVICE_OPTIONS)
class SocialRec:
    def __init__(self) -> None:
        self.settings = Settings.from_env()
        experiments = (load_experiments(self.settings.experiments)
                       if self.settings.experiments else Experiments())
        log_client_errors_on_one_line()
        logging.getLogger("socialrec").setLevel(logging.INFO)  # BentoML leaves WARNING
        self.models = ModelSet(self.bundle_source())  # loaded by _connect
        self.state = Snapshot(experiments, self.models.models)
        self.source_health = Dependency(f"model source ({self.models.source.describe()})")
        self.store_health = Dependency(f"event store ({self._store_name()})")
        self._store: EventStore | None = None
        self._exposures: ExposureLog | None = None
        self.waiting: str | None = "starting"  # what readiness waits for; None once ready
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        # new products and users from feedback, per served version (serving/foldin_state.py)
        self.foldins = FoldIns(lambda: list(self.state.models.values()), lambda: self._store)
        self._connect()  # when everything answers (the usual case) the service is ready now
        self.foldins.start()
        if self.waiting is not None or self.settings.poll_seconds > 0:
            threading.Thread(target=self._maintain, name="socialrec-maintain",
                             daemon=True).start()

    def bundle_source(self) -> BundleSource:
        """Where bundles come from: the environment's (the Bento's service packs its own)."""
        return source_from_env()

    # -- dependencies: connecting, readiness, status -------------------------------------------

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise RequestError(503, f"not ready: {self.waiting}")
        return self._store

    @property
    def exposures(self) -> ExposureLog:
        if self._exposures is None:
            raise RequestError(503, f"not ready: {self.waiting}")
        return self._exposures

    def _store_name(self) -> str:
        try:
            return make_url(self.settings.event_store).render_as_string(hide_password=True)
        except SQLAlchemyError:
            return "(unparsable URL)"

    def _connect(self) -> None:
        """Try what has not answered yet: the event store (then start the exposure writer) and
        the bundles of every alias; ``waiting`` then says what is still missing."""
        if self._store is None:
            try:
                store = EventStore(self.settings.event_store)
            except SQLAlchemyError as exc:
                self.store_health.down(exc, "not ready until it answers")
            else:
                self._exposures = ExposureLog(self.settings.event_store)
                self._store = store
                self.store_health.up()
        if self._missing_aliases():
            with contextlib.suppress(Exception):  # recorded and logged by _refresh_models
                self._refresh_models()
        was, self.waiting = self.waiting, self._waiting_for()
        if self.waiting is None and was is not None:
            log.info("ready: serving %s", self._served())

    def _missing_aliases(self) -> list[str]:
        return sorted(self._aliases(self.state.experiments) - set(self.state.models))

    def _waiting_for(self) -> str | None:
        reasons = []
        if missing := self._missing_aliases():
            reasons.append(f"no model for alias {', '.join(missing)} "
                           f"({self.source_health.error or 'not loaded yet'})")
        if self._store is None:
            reasons.append(f"event store not reachable ({self.store_health.error})")
        return "; ".join(reasons) or None

    def _refresh_models(self, reread_experiments: bool = False) -> list[str]:
        """:meth:`refresh`, recording whether the model source answered. A failure swaps
        nothing (at start-up, each alias's last known version is served if cached)."""
        try:
            changed = self.refresh(reread_experiments)
        except Exception as exc:
            if self._missing_aliases():
                self._load_last_known()
            serving = self._served()
            self.source_health.down(exc, f"still serving {serving}" if serving
                                    else "nothing to serve until it answers")
            raise
        self.source_health.up(f"serving {self._served()}")
        return changed

    def _served(self) -> str:
        return ", ".join(f"{a}={m.version}" for a, m in sorted(self.state.models.items()))

    def _load_last_known(self) -> None:
        with self._reload_lock:
            try:
                found = self.models.load_last_known(self._missing_aliases())
            except Exception as exc:
                log.warning("could not load the last known versions either: %s", one_line(exc))
                return
            if found:
                self.state = Snapshot(self.state.experiments, self.models.models)

    def _maintain(self) -> None:
        """Until ready, try again every ``retry_seconds``; then re-resolve the aliases every
        ``poll_seconds`` (when > 0)."""
        while self.waiting is not None:
            if self._stop.wait(self.settings.retry_seconds):
                return
            self._connect()
        while self.settings.poll_seconds > 0 and not self._stop.wait(self.settings.poll_seconds):
            with contextlib.suppress(Exception):  # recorded and logged by _refresh_models
                self._refresh_models()

    def status(self) -> tuple[bool, dict[str, Any]]:
        """Readiness and its details, for ``GET /status``."""
        ready = self.__is_ready__()
        writer = self._exposures
        return ready, {
            "ready": ready,
            "waiting_for": self.waiting,
            "models": {a: m.version for a, m in sorted(self.state.models.items())},
            "model_source": {"where": self.models.source.describe(),
                             **self.source_health.as_dict()},
            "event_store": {"where": self._store_name(), **self.store_health.as_dict()},
            "exposure_writer": None if writer is None else {
                "alive": writer.alive, "pending_rows": writer.pending_rows,
                "dropped_rows": writer.dropped_rows, "failed_rows": writer.failed_rows},
            "foldin": self.foldins.status(),
        }

    # -- models and routing --------------------------------------------------------------------

    def _aliases(self, experiments: Experiments) -> set[str]:
        alias_for = self.settings.alias_for
        needed = {alias_for(e, a) for exp in experiments.experiments.values()
                  for e in exp.endpoints for a in exp.aliases()}
        routed = {e for exp in experiments.experiments.values() for e in exp.endpoints}
        # an endpoint no experiment routes follows its own alias (by default the shared one)
        needed.update(alias_for(e) for e in ROUTED_ENDPOINTS if e not in routed)
        return needed

    def refresh(self, reread_experiments: bool = False) -> list[str]:
        """Re-resolve every alias (and re-read the experiments file); swap what changed."""
        with self._reload_lock:
            experiments = self.state.experiments
            if reread_experiments and self.settings.experiments:
                experiments = load_experiments(self.settings.experiments)
            changed = self.models.refresh(self._aliases(experiments))
            self.state = Snapshot(experiments, self.models.models)
            return changed

    def _route(self, endpoint: str, unit_id: str) -> Route:
        _one_openmp_thread()
        if self.waiting is not None:  # start-up: a dependency has not answered yet
            raise RequestError(503, f"not ready: {self.waiting}")
        state = self.state  # one read: this request sees one consistent set of bundles
        found = state.experiments.for_endpoint(endpoint)
        if found is None:
            return Route(None, None, "default", state.models[self.settings.alias_for(endpoint)],
                         unit_id)
        name, exp = found
        variant = exp.assign(unit_id)
        alias = self.settings.alias_for(endpoint, exp.variants[variant].alias)
        return Route(name, exp, variant, state.models[alias], unit_id)

    # -- push ----------------------------------------------------------------------------------

    def _push(self, req: PushRequest) -> tuple[Route, str, Push]:
        campaign = campaign_id(req)
        route = self._route("push_targets", campaign)
        bundle = route.model.bundle
        signals = self.foldins.signals(route.model)
        try:  # the products, new ones included (serving/campaigns.py)
            target = resolve(bundle, signals, req, route.model.version)
        except CampaignError as err:
            raise RequestError(err.status, str(err), err.field, err.expected) from err
        n_users = len(bundle.users)
        if req.k > n_users:
            raise RequestError(422, f"k={req.k} is more than the model's {n_users} users", "k",
                               f"an integer in 1..{n_users}")
        holdout = None
        if route.exp is not None and route.exp.holdout.weight > 0:
            holdout = CampaignHoldout(bundle, route.exp.salt, route.exp.holdout.weight, campaign)
        if req.rules.frequency_cap is not None and not self.exposures.flush():
            # count every push answered before this one; say so when that was not possible
            log.warning("frequency cap read the event store before all pushes were written")
        chosen = choose_users(bundle, signals, target, req.k, req, self.store, holdout)
        return route, campaign, chosen.counting(RULE_NAMES)

    def _log_push(self, route: Route, served: dict[str, Any], req: PushRequest,
                  user_ids: list[str], chosen: Push) -> None:
        """The pushed users, and the held-out ones as ``variant="holdout"`` rows (never sent:
        the A/B analysis compares them with the pushed users; the frequency cap skips them).
        A held-out user's rank is where they would have been in the list."""
        now = _now()
        self.exposures.log(ServedList(
            served["request_id"], now, "push_targets", route.experiment, route.variant,
            route.model.version, route.unit_id, user_ids, chosen.items_of(chosen.users),
            chosen.scores))
        held, held_scores = chosen.dropped.get("holdout", (np.zeros(0, dtype=np.int64),
                                                           np.zeros(0, dtype=np.float32)))
        if len(held):
            above = np.searchsorted(-chosen.scores, -held_scores, side="left")
            self.exposures.log(ServedList(
                served["request_id"], now, "push_targets", route.experiment, HOLDOUT,
                route.model.version, route.unit_id, route.model.bundle.users.to_ids(held),
                chosen.items_of(held), held_scores, ranks=above + np.arange(1, len(held) + 1)))

    def _commit_before_reply(self) -> None:
        """With ``SOCIALREC_COMMIT_PUSHES=1``, wait until this push's exposures are committed:
        a frequency cap on any replica sharing the event store then counts it."""
        if self.settings.commit_pushes and not self.exposures.flush():
            raise RequestError(503, "the push could not be recorded in the event store in time; "
                               "retry later")

    def _push_with_budget(self, req: PushRequest) -> PushResponse:
        """A push with an objective other than propensity or a budget
        (serving/push_objective.py): each user's treatment, effect, cost and reason."""
        bundle = self._route("push_targets", campaign_id(req)).model.bundle
        model = bundle.uplift
        money = req.budget.money if req.budget else None
        pushes = req.budget.pushes if req.budget else None
        send_costs = req.budget.costs if req.budget else {}
        try:
            allowed = check_budget(model, money, pushes, send_costs, req.treatments)
        except BudgetError as err:
            raise RequestError(422, str(err), err.field, err.expected) from err
        if model is None or req.objective == "propensity":
            note = (None if req.objective == "propensity" else
                    f"objective {req.objective!r} needs an uplift model, which this bundle has "
                    "not: ranked by propensity")
            cost = send_costs.get("push", next((t.send_cost for t in model.treatments
                                                if t.name == "push"), None) if model else None)
            if money is not None and not cost:
                raise RequestError(422, "a money budget ranked by propensity needs the cost of "
                                   "a push", "budget.costs", "{\"push\": <cost of one push>}")
            k = pushes if pushes is not None else (int(money // cost) if money is not None and
                                                   cost else req.k)
            if k < 1:
                raise RequestError(422, f"budget.money={money:g} is below the cost of one push "
                                   f"({cost:g})", "budget.money", f"at least {cost:g}")
            plain = req.model_copy(update={"k": min(k, K_MAX), "budget": None,
                                           "objective": "propensity"})
            route, campaign, chosen = self._push(plain)
            user_ids = route.model.bundle.users.to_ids(chosen.users)
            served = route.served(chosen.strategy)
            self._log_push(route, served, plain, user_ids, chosen)
            n = len(user_ids)
            return PushResponse(**served, **chosen.fields(), campaign_id=campaign,
                                users=user_ids, scores=chosen.scores.tolist(),
                                removed=chosen.removed, objective="propensity",
                                objective_note=note, treatments=["push"] * n,
                                costs=[float(cost or 1.0)] * n,
                                spent=float(n * (cost or 1.0)))
        everyone = req.model_copy(update={"k": len(model_bundle_users(self, req)),
                                          "budget": None})
        route, campaign, chosen = self._push(everyone)
        bundle = route.model.bundle
        assert bundle.uplift is not None  # the route of this campaign: the bundle checked above
        held = chosen.dropped.get("holdout", (np.zeros(0, dtype=np.int64),))[0]
        now = _now()
        products = campaign_products(bundle, self.foldins.signals(route.model), chosen)
        found = plan(bundle, bundle.uplift, products, campaign, chosen.users, held,
                     req.objective, money, pushes, allowed, send_costs, self.store,
                     req.item_price, now)
        user_ids = bundle.users.to_ids(found.users)
        served = route.served(f"{req.objective}:{chosen.strategy}")
        self.exposures.log(ServedList(
            served["request_id"], now, "push_targets", route.experiment, route.variant,
            route.model.version, route.unit_id, user_ids, found.items, found.values,
            treatments=found.treatments, explored=found.explored))
        if len(found.held):
            self.exposures.log(ServedList(
                served["request_id"], now, "push_targets", route.experiment, HOLDOUT,
                route.model.version, route.unit_id, bundle.users.to_ids(found.held),
                found.held_items, found.held_values, treatments="control"))
        return PushResponse(**served, item_id=chosen.item_id, campaign_id=campaign,
                            users=user_ids, scores=found.values.tolist(), removed=chosen.removed,
                            user_items=found.items if chosen.best is not None else None,
                            new_items=chosen.target.new_items or None,
                            objective=req.objective, treatments=found.treatments,
                            effects=found.effects.tolist(), costs=found.costs.tolist(),
                            reasons=found.reasons, spent=found.spent)

    @bentoml.api(route="/push_targets")
    @json_errors
    def push_targets(self, req: PushRequest, /) -> PushResponse:
        """The users to push ``item_id`` to, best first, after the business rules; with an
        ``objective`` or a ``budget``: each user's treatment, effect, cost and reason."""
        if req.budget is not None or req.objective != "propensity":
            return self._push_with_budget(req)
        route, campaign, chosen = self._push(req)
        user_ids = route.model.bundle.users.to_ids(chosen.users)
        served = route.served(chosen.strategy)
        self._log_push(route, served, req, user_ids, chosen)
        self._commit_before_reply()
        return PushResponse(**served, **chosen.fields(), campaign_id=campaign, users=user_ids,
                            scores=chosen.scores.tolist(), removed=chosen.removed)

    @bentoml.api(route="/push_targets_stream")
    @json_errors
    def push_targets_stream(
        self, req: PushRequest, /
    ) -> Annotated[str, ContentType("application/x-ndjson")]:
        """Campaign-sized pushes as NDJSON: a first line with the response fields (request_id,
        variant, model_version, strategy, removed, n_users), then one ``{"user_id", "score"}``
        line per user, best first (with a budget or objective: a budget allocated across the
        campaign, each line with the user's treatment, effect, cost and reason)."""
        if req.budget is not None or req.objective != "propensity":
            return _stream_plan(self._push_with_budget(req))  # type: ignore[return-value]
        route, campaign, chosen = self._push(req)  # errors surface before the stream starts
        user_ids = route.model.bundle.users.to_ids(chosen.users)
        served = route.served(chosen.strategy)
        self._log_push(route, served, req, user_ids, chosen)
        self._commit_before_reply()
        products = chosen.fields()
        user_items = products.pop("user_items")  # a set: one "item_id" on each user's line
        head = {**served, **products, "campaign_id": campaign,
                "removed": chosen.removed, "n_users": len(user_ids)}

        def lines() -> Iterator[str]:
            yield json.dumps(head) + "\n"
            scores = chosen.scores.tolist()
            for start in range(0, len(user_ids), STREAM_CHUNK):
                end = start + STREAM_CHUNK
                yield "".join(
                    json.dumps({"user_id": u, "score": s} if user_items is None else
                               {"user_id": u, "score": s, "item_id": user_items[start + i]})
                    + "\n" for i, (u, s) in enumerate(zip(user_ids[start:end],
                                                           scores[start:end], strict=True)))

        return StreamingResponse(lines(), media_type="application/x-ndjson")  # type: ignore[return-value]

    # -- share partners ------------------------------------------------------------------------

    @bentoml.api(route="/share_partners")
    @json_errors
    def share_partners(self, req: ShareRequest, /) -> ShareResponse:
        """The friends ``user_id`` should share ``item_id`` with, best first."""
        route = self._route("share_partners", req.user_id)
        bundle = route.model.bundle
        sharer = bundle.users.get(req.user_id)
        if sharer is None:
            raise RequestError(404, f"user_id {req.user_id!r} is not known to model "
                               f"{route.model.version}", "user_id",
                               "a user id of the model's social graph")
        item = bundle.items.get(req.item_id)
        folded = None if item is not None else (
            self.foldins.signals(route.model).item_vector(req.item_id))  # from its feedback
        vec, fallback = ((folded, "foldin") if folded is not None
                         else item_vector(bundle, item, req.category))
        model = share_model(bundle)  # built when the bundle was loaded
        strategy = model.strategy + (f"+item_{fallback}" if fallback else "")
        found = rank_partners(bundle, sharer, vec, item, req.k, req.hops)
        served = route.served(strategy)
        friend_ids = bundle.users.to_ids(found.users)
        partners = [
            SharePartner(user_id=f, score=float(found.scores[i]), hop=int(found.hop[i]),
                         parts={n: float(v[i]) for n, v in found.parts.items()},
                         reason=found.reasons[i])
            for i, f in enumerate(friend_ids)
        ]
        if not partners:
            reason = ("the sharer has no friends in the social graph" if req.hops == 1
                      else "the sharer has no friends or friends of friends in the social graph")
        elif model.ranker is None:
            reason = f"default ranking (tie strength, then affinity): {model.why_default}"
        else:
            reason = None
        if partners:
            # The event store's contract: user_id is the requesting user (the sharer), one row
            # per rank; a friend's join then counts for the sharer's request.
            self.exposures.log(ServedList(
                served["request_id"], _now(), "share_partners", route.experiment, route.variant,
                route.model.version, req.user_id, req.user_id, req.item_id, found.scores))
        return ShareResponse(**served, partners=partners, item_fallback=fallback, reason=reason)

    # -- recommend -----------------------------------------------------------------------------

    @bentoml.api(route="/recommend")
    @json_errors
    def recommend(self, req: RecommendRequest, /) -> RecommendResponse:
        """Items for ``user_id``, best first; cold users get the fallbacks of the module doc."""
        route = self._route("recommend", req.user_id)
        bundle = route.model.bundle
        n_items = len(bundle.items)
        if req.k > n_items:
            raise RequestError(422, f"k={req.k} is more than the model's {n_items} items", "k",
                               f"an integer in 1..{n_items}")
        user = bundle.users.get(req.user_id)
        if user is None or not has_interactions(bundle, user):  # serving/fallback.py
            items, scores, strategy = cold_start(
                bundle, self.foldins.signals(route.model), req.user_id, user,
                self.foldins.friends(req.user_id), req.k, req.exclude_seen)
        else:
            items, scores, strategy = recommend_items(bundle, user, req.k, req.exclude_seen)
        served = route.served(strategy)
        item_ids = bundle.items.to_ids(items)
        if item_ids:
            self.exposures.log(ServedList(
                served["request_id"], _now(), "recommend", route.experiment, route.variant,
                route.model.version, req.user_id, req.user_id, item_ids, scores))
        return RecommendResponse(**served, items=item_ids, scores=np.asarray(scores).tolist())

    # -- feedback ------------------------------------------------------------------------------

    @bentoml.api(route="/feedback")
    @json_errors
    def feedback(self, req: FeedbackRequest, /) -> FeedbackResponse:
        """Store feedback events; replies once they are committed. Idempotent on event_id."""
        now = _now()
        events = [Feedback(e.event_id, e.request_id, e.ts or now, e.user_id, e.item_id, e.event,
                           e.value) for e in req.events]
        new = self.store.log_feedback(events)
        try:  # committed: new products and users fold in now (other replicas: at their poll)
            self.foldins.observe(events)
        except Exception:  # the next poll reads them from the store anyway
            log.exception("fold-in of this feedback failed; left to the next poll")
        return FeedbackResponse(accepted=new, duplicates=len(events) - new)

    # -- admin ---------------------------------------------------------------------------------

    @bentoml.api(route="/admin/reload")
    @json_errors
    def admin_reload(self, ctx: bentoml.Context) -> ReloadResponse:
        """Re-read the experiments file and re-resolve every alias now. Needs the header
        ``Authorization: Bearer <SOCIALREC_ADMIN_TOKEN>``."""
        token = self.settings.admin_token
        if token is None:
            raise RequestError(403, "admin endpoints are off: SOCIALREC_ADMIN_TOKEN is not set")
        given = ctx.request.headers.get("authorization", "")
        if not given.lower().startswith("bearer "):
            raise RequestError(401, "missing admin token", "Authorization",
                               "Bearer <SOCIALREC_ADMIN_TOKEN>")
        if not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            raise RequestError(403, "wrong admin token", "Authorization",
                               "Bearer <SOCIALREC_ADMIN_TOKEN>")
        try:
            changed = self._refresh_models(reread_experiments=True)
        except ValueError as exc:  # a bad experiments file or share ranker
            raise RequestError(422, f"reload refused, still serving the old models: {exc}",
                               "SOCIALREC_EXPERIMENTS") from exc
        except Exception as exc:  # registry unreachable, alias missing, download failed
            raise RequestError(503, f"reload failed, still serving the old models: {exc}"
                               ) from exc
        return ReloadResponse(models={a: m.version for a, m in self.state.models.items()},
                              changed=changed)

    # -- lifecycle -----------------------------------------------------------------------------

    def __is_ready__(self) -> bool:
        return self.waiting is None and self._exposures is not None and self._exposures.alive

    @bentoml.on_shutdown
    def close(self) -> None:
        self._stop.set()
        self.foldins.close()
        if self._exposures is not None:
            self._exposures.close()
        if self._store is not None:
            self._store.close()


add_http_edges(SocialRec)  # JSON bodies only, GET /status (serving/http.py)


def model_bundle_users(service: SocialRec, req: PushRequest) -> Any:
    """The users of the bundle that answers ``req`` (every one is a candidate of a budget)."""
    return service._route("push_targets", campaign_id(req)).model.bundle.users


def _stream_plan(resp: PushResponse) -> StreamingResponse:
    """NDJSON of a budgeted push: the response fields, then one line per user."""
    per_user = ("users", "scores", "treatments", "effects", "costs", "reasons", "user_items")
    names = {"users": "user_id", "user_items": "item_id"}  # a set: each user's product
    head = {k: v for k, v in resp.model_dump().items() if k not in per_user}
    head["n_users"] = len(resp.users)
    columns = {k: getattr(resp, k) for k in per_user if getattr(resp, k) is not None}

    def lines() -> Iterator[str]:
        yield json.dumps(head) + "\n"
        for start in range(0, len(resp.users), STREAM_CHUNK):
            yield "".join(
                json.dumps({names.get(k, k.rstrip("s")): v[i]
                            for k, v in columns.items()}) + "\n"
                for i in range(start, min(start + STREAM_CHUNK, len(resp.users))))

    return StreamingResponse(lines(), media_type="application/x-ndjson")
