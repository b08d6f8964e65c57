"""``socialrec uplift``: train an uplift model from the event store, and the uplift benchmark.

socialrec/training/cli.py mounts ``uplift_app`` as ``socialrec uplift``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

uplift_app = typer.Typer(help="Incentive-aware push: uplift models.", no_args_is_help=True,
                         pretty_exceptions_enable=False)
console = Console()


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@uplift_app.command()
def train(
    bundle: Annotated[Path, typer.Option(help="The bundle directory the service serves (its "
                                              "embeddings and graph give the features).")],
    out: Annotated[Path, typer.Option(help="Write the bundle with its uplift/ model here.")],
    config: Annotated[list[Path] | None, typer.Option("--config", "-c")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s")] = None,
    store: Annotated[str | None, typer.Option(help="Event store URL (default: env "
                                              "SOCIALREC_EVENT_STORE or serving.event_store).")
                     ] = None,
    now: Annotated[str | None, typer.Option(help="Treat this ISO time as now (outcome windows "
                                                 "ending later are left out).")] = None,
    register: Annotated[bool, typer.Option(help="Log to MLflow and register the bundle as a "
                                                "new model version.")] = True,
) -> None:
    """Learn each treatment's incremental effect from the campaigns' exposures (pushed vs held
    out) and feedback; refuses data it cannot trust, with counts."""
    import mlflow
    import numpy as np

    from socialrec.features.events import EventStore
    from socialrec.models.bundle import ModelBundle
    from socialrec.models.uplift_features import FeatureSource, fit_projection
    from socialrec.training import tracking
    from socialrec.training.cli import load_or_exit
    from socialrec.training.config import format_names
    from socialrec.training.uplift import (
        NotEnoughEvidence,
        campaign_rows,
        check_rows,
        features_for_rows,
        fit_uplift,
    )
    from socialrec.training.uplift_bench import qini_auuc
    from socialrec.training.uplift_config import UpliftConfig

    cfg = load_or_exit(config, set_)
    ucfg = UpliftConfig.model_validate(cfg["uplift"])
    url = store or os.environ.get("SOCIALREC_EVENT_STORE") or tracking.anchored_sqlite(
        cfg["serving"]["event_store"])
    moment = datetime.fromisoformat(now) if now else datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    served = ModelBundle.load(bundle)
    with EventStore(url) as events:
        from datetime import timedelta

        rows = campaign_rows(events.exposures(), events.feedback(),
                             timedelta(days=ucfg.window_days),
                             timedelta(days=ucfg.push_window_days))
    try:
        rows, evidence = check_rows(rows, ucfg, moment)
    except NotEnoughEvidence as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    users = served.users.to_index(rows.user_id.tolist(), missing=-1)
    items = served.items.to_index(rows.item_id.tolist(), missing=-1)
    known = (users >= 0) & (items >= 0)
    if not known.all():
        console.print(f"{int((~known).sum()):,} rows name users or items the bundle does not "
                      "know: left out")
    rows = rows[known].assign(user=users[known], item=items[known]).reset_index(drop=True)
    src = FeatureSource(served.user_emb, served.item_emb, served.seen, served.purchases,
                        served.social)
    projection = fit_projection(served.user_emb, ucfg.n_components)
    # Qini / AUUC on campaigns kept aside, then the model on every campaign
    campaigns = rows.campaign.unique()
    rng = np.random.default_rng(ucfg.seed)
    held = set(rng.choice(campaigns, max(1, round(ucfg.validation_share * len(campaigns))),
                          replace=False)) if len(campaigns) > 1 else set()
    x = features_for_rows(src, rows, projection)
    metrics: dict[str, float] = {}
    in_val = rows.campaign.isin(held).to_numpy()
    if held and in_val.any() and (~in_val).any():
        val_model, _ = fit_uplift(x[~in_val], rows[~in_val], ucfg, projection)
        conv = val_model.predict_effects(x[in_val])
        val = rows[in_val]
        for j, name in enumerate(val_model.treatment_names):
            part = val.treatment.isin([name, "control"]).to_numpy()
            frame = {"y": val.conversion.to_numpy()[part],
                     "w": (val.treatment.to_numpy()[part] == name).astype(int),
                     "uplift": conv[part, j], "random": rng.random(int(part.sum()))}
            import pandas as pd

            if frame["w"].min() != frame["w"].max():
                qini, auuc = qini_auuc(pd.DataFrame(frame), "y", "w")
                metrics[f"valid.qini.{name}"] = float(qini["uplift"])
                metrics[f"valid.auuc.{name}"] = float(auuc["uplift"])
    evidence_dict = {"rows": evidence.rows, "per_treatment": evidence.per_treatment,
                     "campaigns": evidence.campaigns, "open_windows": evidence.open_windows,
                     **metrics}
    model, _ = fit_uplift(x, rows, ucfg, projection, evidence_dict)
    if out.resolve() != bundle.resolve():
        shutil.copytree(bundle, out, dirs_exist_ok=True)
    model.save(out / "uplift")
    console.print(f"{evidence.summary()}; uplift model -> {out / 'uplift'}")
    for name, value in metrics.items():
        console.print(f"{name}: {value:.4f}")
    if register:
        names = format_names(cfg)
        tracking.setup(cfg)
        with mlflow.start_run(run_name="uplift"):
            mlflow.log_params({"uplift.learner": "T-learner/LightGBM",
                               **{f"uplift.{k}": v for k, v in ucfg.model_dump().items()
                                  if not isinstance(v, dict)}})
            mlflow.log_metrics({k.replace(".", "_"): v for k, v in metrics.items()}
                               | {"uplift_rows": evidence.rows})
            mlflow.log_artifacts(str(out / "uplift"), "uplift")
            version = tracking.log_bundle(out, names["registered_model"])
        console.print(f"registered {names['registered_model']} version {version}")


@uplift_app.command()
def benchmark(
    out: Annotated[Path, typer.Option(help="Markdown report (a Qini PNG is written beside).")
                   ] = Path("results/uplift.md"),
    worlds: Annotated[str, typer.Option(help="Comma-separated worlds.")] =
    "1_proportional,2_sure_things,3_sleeping_dogs",
    hillstrom: Annotated[bool, typer.Option(help="Also the real Hillstrom campaign.")] = True,
    splits: Annotated[int, typer.Option(min=2, help="Hillstrom: random splits.")] = 10,
    config: Annotated[list[Path] | None, typer.Option("--config", "-c")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s")] = None,
) -> None:
    """Uplift vs propensity vs random in the simulated worlds (known truth) and on Hillstrom."""
    import sys

    from socialrec.training.cli import load_or_exit
    from socialrec.training.config import data_root
    from socialrec.training.uplift_bench import run_benchmark
    from socialrec.training.uplift_config import UpliftConfig

    cfg = load_or_exit(config, set_)
    command = "socialrec uplift " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else \
        "socialrec uplift benchmark"
    paths = run_benchmark(UpliftConfig.model_validate(cfg["uplift"]), worlds.split(","),
                          data_root(cfg) if hillstrom else None, splits, out, command,
                          _commit())
    for path in paths:
        console.print(f"wrote {path}")
