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


def download_alias(cfg: dict, alias: str, dst: Path) -> tuple[Path, str]:
    """The bundle directory of the registered model's version holding ``alias``, downloaded
    under ``dst``, and that version."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    from socialrec.training import tracking
    from socialrec.training.config import format_names

    name = format_names(cfg)["registered_model"]
    client, _ = tracking.setup(cfg)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        console.print(f"[red]--alias {alias}: no version of {name} holds it in "
                      f"{tracking.tracking_uri(cfg)}[/red]")
        raise typer.Exit(2) from None
    uri = client.get_model_version_download_uri(name, version.version)
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                         tracking_uri=client.tracking_uri))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
    entry = (mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts") or {}).get(
        "bundle")
    if not entry or not (model_dir / entry["path"] / "meta.json").exists():
        console.print(f"[red]{name} version {version.version}: its model has no bundle[/red]")
        raise typer.Exit(2)
    return model_dir / entry["path"], str(version.version)


@uplift_app.command()
def train(
    bundle: Annotated[Path | None, typer.Option(
        help="The bundle directory the service serves (its embeddings and graph give the "
             "features); or --alias.")] = None,
    alias: Annotated[str | None, typer.Option(
        help="Train on the bundle of the registered model's version holding this alias (e.g. "
             "champion); the new version carries the same bundle plus the uplift model.")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the bundle with its uplift/ model here (default with --register: a "
             "temporary directory, removed once registered).")] = None,
    config: Annotated[list[Path] | None, typer.Option("--config", "-c")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s")] = None,
    store: Annotated[str | None, typer.Option(help="Event store URL (default: env "
                                              "SOCIALREC_EVENT_STORE or serving.event_store).")
                     ] = None,
    now: Annotated[str | None, typer.Option(help="Treat this ISO time as now (outcome windows "
                                                 "ending later are left out).")] = None,
    register: Annotated[bool, typer.Option(help="Log to MLflow and register the bundle as a "
                                                "new model version.")] = True,
    set_alias: Annotated[str | None, typer.Option(
        "--set-alias", help="Give the new version this alias (e.g. challenger, for an "
                            "experiment against the champion).")] = None,
) -> None:
    """Learn each treatment's incremental effect from the campaigns' exposures (pushed vs held
    out) and feedback; refuses data it cannot trust, with counts."""
    import tempfile

    from socialrec.training.cli import load_or_exit

    if (bundle is None) == (alias is None):
        console.print("[red]give exactly one of --bundle DIR and --alias NAME[/red]")
        raise typer.Exit(2)
    if out is None and not register:
        console.print("[red]--no-register needs --out DIR (where the bundle is written)[/red]")
        raise typer.Exit(2)
    if set_alias is not None and not register:
        console.print("[red]--set-alias needs --register[/red]")
        raise typer.Exit(2)
    cfg = load_or_exit(config, set_)
    with tempfile.TemporaryDirectory(prefix="socialrec-uplift-") as tmp:
        parent = None
        if alias is not None:
            bundle, parent = download_alias(cfg, alias, Path(tmp) / "parent")
        assert bundle is not None
        _train(cfg, bundle, out or Path(tmp) / "bundle", store, now, register, set_alias,
               parent)


def _train(cfg: dict, bundle: Path, out: Path, store: str | None, now: str | None,
           register: bool, set_alias: str | None, parent: str | None) -> None:
    import mlflow

    from socialrec.features.events import EventStore
    from socialrec.models.bundle import ModelBundle
    from socialrec.models.uplift_features import FeatureSource, fit_projection
    from socialrec.training import tracking
    from socialrec.training.config import format_names
    from socialrec.training.uplift import (
        NotEnoughEvidence,
        campaign_rows,
        check_rows,
        features_for_rows,
        fit_uplift,
        select_learner,
    )
    from socialrec.training.uplift_config import UpliftConfig

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
    # the learner chosen by Qini on campaigns kept aside, then fitted on every campaign
    x = features_for_rows(src, rows, projection)
    selection = select_learner(x, rows, ucfg, projection)
    metrics = {f"valid.qini.{kind}.{t}": q for kind, per in selection.qini.items()
               for t, q in per.items()}
    evidence_dict = {"rows": evidence.rows, "per_treatment": evidence.per_treatment,
                     "campaigns": evidence.campaigns, "open_windows": evidence.open_windows,
                     "parent_version": parent,
                     "selection": {"learner": selection.learner, "why": selection.note,
                                   "validation_campaigns": selection.validation_campaigns,
                                   "qini": selection.qini}}
    model, _ = fit_uplift(x, rows, ucfg, projection, evidence_dict, learner=selection.learner)
    if out.resolve() != bundle.resolve():
        shutil.copytree(bundle, out, dirs_exist_ok=True)
        shutil.rmtree(out / "uplift", ignore_errors=True)  # the parent's, if it had one
    model.save(out / "uplift")
    console.print(f"{evidence.summary()}; learner {selection.learner} ({selection.note}); "
                  f"uplift model -> {out / 'uplift'}")
    for name, value in metrics.items():
        console.print(f"{name}: {value:.4f}")
    if register:
        registered = format_names(cfg)["registered_model"]
        client, _ = tracking.setup(cfg)
        with mlflow.start_run(run_name="uplift"):
            mlflow.log_params({**{f"uplift.{k}": v for k, v in ucfg.model_dump().items()
                                  if not isinstance(v, dict)},
                               "uplift.learner": selection.learner,
                               "uplift.parent_version": parent or "dir"})
            mlflow.log_metrics({k.replace(".", "_"): v for k, v in metrics.items()}
                               | {"uplift_rows": evidence.rows})
            mlflow.log_artifacts(str(out / "uplift"), "uplift")
            tags = {"uplift_learner": selection.learner}
            if parent is not None:
                tags["uplift_parent_version"] = parent
            version = tracking.log_bundle(out, registered, tags)
        console.print(f"registered {registered} version {version}")
        if set_alias is not None:
            client.set_registered_model_alias(registered, set_alias, version)
            console.print(f"alias {set_alias} -> {registered} version {version}")


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
