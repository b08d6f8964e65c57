"""The ``socialrec`` command: every package's commands, gathered in one place.

- training/cli.py: ``train``, ``promote``, ``benchmark``, ``tune``, ``data describe``;
- evaluation/cli.py: ``ab report``, ``ab simulate``;
- here: ``serve``, ``push`` and ``demo``, which read a training config and run the service's code
  (serving/), so they live in the one module allowed to import both; ``bento pack`` / ``bento
  build`` (the service's Bento around the registry's champion) and ``mlflow-server`` (the tracking
  server on PostgreSQL), the production path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from socialrec.evaluation.cli import ab_app
from socialrec.features.paths import project_dir
from socialrec.models.bundle import ModelBundle
from socialrec.training import tracking
from socialrec.training.cli import ConfigOpt, SetOpt, console, load_or_exit
from socialrec.training.cli import app as training_app

app = typer.Typer(
    help="socialrec: social e-commerce recommendation and targeted push.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(training_app)
app.add_typer(ab_app, name="ab")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run the BentoML service (loads the configured registry alias)."""

    cfg = load_or_exit(config, set_)
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri(cfg)  # already honours the environment
    env.setdefault("SOCIALREC_MODEL", cfg["serving"]["model"])
    env.setdefault("SOCIALREC_ALIAS", cfg["serving"]["alias"])
    for endpoint, alias in cfg["serving"]["aliases"].items():  # the best model per task
        env.setdefault(f"SOCIALREC_ALIAS_{endpoint.upper()}", alias)
    env.setdefault("SOCIALREC_EVENT_STORE", tracking.anchored_sqlite(cfg["serving"]["event_store"]))
    if cfg["serving"].get("experiments"):
        experiments = Path(cfg["serving"]["experiments"])
        env.setdefault(
            "SOCIALREC_EXPERIMENTS",
            str(experiments if experiments.is_absolute() else project_dir() / experiments),
        )
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "socialrec.serving.service:SocialRec",
        "--host",
        host,
        "--port",
        str(port),
    ]
    raise typer.Exit(subprocess.call(cmd, env=env))


def _registry_bundle(cfg: dict, alias: str | None = None) -> tuple[ModelBundle, str]:
    """The bundle the configured serving alias points to, via the service's own loader."""
    from socialrec.serving.loader import RegistrySource

    source = RegistrySource(cfg["serving"]["model"], tracking.tracking_uri(cfg))
    alias = alias or cfg["serving"]["alias"]
    version = source.resolve(alias)
    return source.load(alias, version), f"{cfg['serving']['model']}/{version}"


@app.command()
def push(
    item: Annotated[str, typer.Option(help="Item id to push.")],
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")],
    k: Annotated[int, typer.Option(help="How many users (propensity, no --budget).")] = 100,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    alias: Annotated[
        str | None, typer.Option(
            help="Registry alias (default serving.aliases.push_targets, else serving.alias).")
    ] = None,
    exclude_buyers: Annotated[bool, typer.Option(help="Drop users who bought the item.")] = True,
    respect_opt_out: Annotated[bool, typer.Option(help="Drop users who opted out.")] = True,
    max_pushes: Annotated[
        int | None, typer.Option(help="Frequency cap: pushes per window.")
    ] = None,
    window_hours: Annotated[int, typer.Option(help="Frequency cap window.")] = 24,
    objective: Annotated[str, typer.Option(
        help="propensity | uplift | margin (uplift and margin need the bundle's uplift model)")
    ] = "propensity",
    budget: Annotated[float | None, typer.Option(
        help="Spend at most this: a number of pushes, or money with --budget-kind money.")
    ] = None,
    budget_kind: Annotated[str, typer.Option(help="pushes | money")] = "pushes",
) -> None:
    """Campaign-size push list (k up to every user) written to a file, with the same rules as
    the service's /push_targets; with --objective uplift|margin and --budget, the budget is
    allocated across users and treatments as the service's does (serving/push_objective.py)."""
    import pandas as pd

    from socialrec.features.events import EventStore
    from socialrec.serving.retrieval import push_targets
    from socialrec.serving.schemas import FrequencyCapRule, PushRules

    cfg = load_or_exit(config, set_)
    bundle, version = _registry_bundle(cfg, alias or cfg["serving"]["aliases"].get("push_targets"))
    cap = (
        None
        if max_pushes is None
        else FrequencyCapRule(max_pushes=max_pushes, window_hours=window_hours)
    )
    rules = PushRules(
        exclude_buyers=exclude_buyers,
        respect_opt_out=respect_opt_out,
        frequency_cap=cap,
        holdout=False,
    )
    store = None
    if cap is not None:
        store = EventStore(
            os.environ.get("SOCIALREC_EVENT_STORE")
            or tracking.anchored_sqlite(cfg["serving"]["event_store"])
        )
    if objective != "propensity" or budget is not None:
        _push_with_budget(cfg, bundle, version, item, objective, budget, budget_kind, rules, out)
        return
    t = time.perf_counter()
    try:
        result = push_targets(bundle, item, k, rules, store)
    except (KeyError, ValueError) as err:
        console.print(f"[red]{err.args[0] if err.args else err}[/red]")
        raise typer.Exit(2) from None
    frame = pd.DataFrame(
        {
            "rank": range(1, len(result.user_ids) + 1),
            "user_id": result.user_ids,
            "score": result.scores,
            "item_id": item,
            "model_version": version,
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    removed = ", ".join(f"{rule} {n:,}" for rule, n in result.removed.items()) or "none"
    console.print(
        f"{len(frame):,} users for item {item} from {version} "
        f"({result.strategy}, {time.perf_counter() - t:.2f} s) -> {out}; removed: {removed}"
    )


def _push_with_budget(cfg: dict, bundle: ModelBundle, version: str, item: str, objective: str,
                      budget: float | None, budget_kind: str, rules: Any, out: Path) -> None:
    """``socialrec push --objective ... --budget ...``: the allocation /push_targets makes."""
    from datetime import UTC, datetime

    import numpy as np
    import pandas as pd

    from socialrec.features.events import EventStore
    from socialrec.serving.push_objective import BudgetError, Products, check_budget, plan
    from socialrec.serving.retrieval import make_rules, select_users

    def refuse(message: str) -> None:
        console.print(f"[red]{message}[/red]")
        raise typer.Exit(2)

    if objective not in ("propensity", "uplift", "margin"):
        refuse(f"--objective: expected propensity, uplift or margin, got {objective!r}")
    if budget_kind not in ("pushes", "money"):
        refuse(f"--budget-kind: expected pushes or money, got {budget_kind!r}")
    if budget is None:
        refuse("--budget: needed with --objective uplift or margin")
    model = bundle.uplift
    if model is None and objective != "propensity":
        refuse(f"--objective {objective}: the bundle {version} has no uplift model "
               "(socialrec uplift train)")
    if model is None or objective == "propensity":
        refuse("--budget with --objective propensity: give --k instead")
    assert model is not None and budget is not None
    money = budget if budget_kind == "money" else None
    pushes = int(budget) if budget_kind == "pushes" else None
    try:
        treatments = check_budget(model, money, pushes, {}, None)
    except BudgetError as err:
        refuse(f"--budget: {err}")
    index = bundle.items.get(item)
    if index is None:
        refuse(f"item_id {item!r} is not in the model's item map")
    assert index is not None
    t = time.perf_counter()
    store = EventStore(os.environ.get("SOCIALREC_EVENT_STORE")
                       or tracking.anchored_sqlite(cfg["serving"]["event_store"]))
    eligible = select_users(bundle, index, len(bundle.users),
                            make_rules(bundle, index, rules, store))
    found = plan(bundle, model, Products.one(bundle, index), item, eligible.users,
                 np.zeros(0, dtype=np.int64),
                 objective, money, pushes, treatments, {}, store, None, datetime.now(UTC))
    store.close()
    frame = pd.DataFrame({
        "rank": range(1, len(found.users) + 1), "user_id": bundle.users.to_ids(found.users),
        "treatment": found.treatments, "explored": found.explored, "value": found.values,
        "effect": found.effects, "cost": found.costs, "reason": found.reasons,
        "item_id": item, "model_version": version})
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False) if out.suffix == ".csv" else frame.to_parquet(out, index=False)
    given = frame.treatment.value_counts().to_dict()
    console.print(f"{len(frame):,} users for item {item} from {version} by {objective} "
                  f"({time.perf_counter() - t:.2f} s), expected spend {found.spent:.2f}, "
                  f"treatments {given} -> {out}")


@app.command()
def demo(
    url: Annotated[
        str, typer.Option(help="Base URL of a running service.")
    ] = "http://127.0.0.1:3000",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Call every endpoint of a running service once with real ids and print the answers."""
    import httpx
    import numpy as np

    cfg = load_or_exit(config, set_)
    bundle, _ = _registry_bundle(cfg)
    # A sharer with friends and purchases, and an item they bought: the question a share UI asks.
    degree = np.diff(bundle.social.indptr)
    bought = np.diff(bundle.purchases.indptr)
    sharer = int(np.argmax((degree > 2) & (bought > 0)))
    item = int(bundle.purchases.indices[bundle.purchases.indptr[sharer]])
    hot_item = int(np.argmax(bundle.popularity))
    user_id, item_id = bundle.users.to_ids([sharer])[0], bundle.items.to_ids([item])[0]
    hot_id = bundle.items.to_ids([hot_item])[0]
    calls = [
        ("/push_targets", {"item_id": hot_id, "k": 5}),
        ("/share_partners", {"user_id": user_id, "item_id": item_id, "k": 5}),
        ("/recommend", {"user_id": user_id, "k": 5}),
        (
            "/feedback",
            {
                "events": [
                    {
                        "event_id": f"demo-{os.getpid()}",
                        "user_id": user_id,
                        "item_id": item_id,
                        "event": "click",
                    }
                ]
            },
        ),
        ("/recommend", {"user_id": "no-such-user", "k": 3}),
        ("/push_targets", {"item_id": hot_id, "k": 0}),
    ]
    with httpx.Client(base_url=url, timeout=30) as client:
        for path, body in calls:
            response = client.post(path, json=body)
            console.rule(f"POST {path} {json.dumps(body)} -> {response.status_code}")
            console.print_json(response.text)


bento_app = typer.Typer(
    help="The service's Bento (bentofile.yaml), serving the registry's champion packed into it.",
    no_args_is_help=True,
)
app.add_typer(bento_app, name="bento")

AliasOpt = Annotated[
    str | None, typer.Option(help="Registry alias to pack (default serving.alias).")
]


def _pack(cfg: dict, alias: str | None):  # -> the stored BentoML model
    from socialrec.serving.bento_build import PackError, pack
    from socialrec.serving.loader import RegistrySource

    source = RegistrySource(cfg["serving"]["model"], tracking.tracking_uri(cfg))
    try:
        return pack(source, alias or cfg["serving"]["alias"])
    except PackError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None


@bento_app.command("pack")
def bento_pack(config: ConfigOpt = None, set_: SetOpt = None, alias: AliasOpt = None) -> None:
    """Copy the bundle of serving.model@alias into BentoML's model store (socialrec-bundle),
    for a later `bentoml build` (BENTOML_HOME says where the store is)."""
    model = _pack(load_or_exit(config, set_), alias)
    meta = model.info.metadata
    console.print(f"packed {meta['registered_model']}/{meta['version']} as {model.tag}; build "
                  f"with: bentoml build --arg model={model.tag}")


@bento_app.command("build")
def bento_build(config: ConfigOpt = None, set_: SetOpt = None, alias: AliasOpt = None) -> None:
    """Pack serving.model@alias (as `bento pack`) and build bentofile.yaml around it."""
    from socialrec.serving.bento_build import build

    model = _pack(load_or_exit(config, set_), alias)
    bento = build(str(model.tag), project_dir())
    meta = model.info.metadata
    console.print(f"built Bento {bento.tag} serving {meta['registered_model']}/"
                  f"{meta['version']} (model {model.tag})")
    console.print(f"serve it: bentoml serve {bento.tag}; image: bentoml containerize {bento.tag}")


@app.command(
    "mlflow-server",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def mlflow_server(
    ctx: typer.Context,
    backend_store_uri: Annotated[
        str, typer.Option(help="SQLAlchemy URL of the backend store (created if missing).")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/mlflow",
    artifacts_destination: Annotated[
        str, typer.Option(help="Where the server keeps the artifacts it serves (dir or URI).")
    ] = "mlartifacts",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5000,
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 1,
) -> None:
    """Run the MLflow tracking server on PostgreSQL with served artifacts (readiness: GET
    /health). Options after the known ones go to `mlflow server` (e.g. --allowed-hosts)."""
    from socialrec.training.tracking_server import ensure_database, server_command

    if ensure_database(backend_store_uri):
        console.print(f"created the database of {backend_store_uri}")
    artifacts = artifacts_destination
    if "://" not in artifacts and not Path(artifacts).is_absolute():
        artifacts = str(project_dir() / artifacts)
    command = server_command(backend_store_uri, artifacts, host, port, workers, ctx.args)
    # tracking and the registry only: MLflow's job runner (GenAI jobs) is off unless asked for
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.execv(command[0], command)  # the server takes this process: signals reach it directly


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
