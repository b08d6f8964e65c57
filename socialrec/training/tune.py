"""``socialrec tune``: hyper-parameter search on the VALIDATION split (Optuna TPE), one MLflow run
per trial, the best configuration written back as an experiment YAML that ``extends:`` the config.

Akiba et al., *Optuna: A Next-generation Hyperparameter Optimization Framework*, KDD 2019. Trials
of the GNN models report their validation curve, so Optuna's median pruner stops a trial whose
curve is below the median of earlier trials at the same epoch.

Test is never read here: a trial fits on ``train`` (early stopping on ``valid``) and is scored on
``valid`` only; the test split is read once, later, by ``socialrec train`` / ``benchmark``.

Search spaces (:data:`SPACES`) are per model; ``--space FILE`` replaces them with a YAML mapping
``param: [kind, ...]`` where kind is ``log`` / ``float`` (low, high), ``int`` (low, high) or
``categorical`` (choices). Every parameter not searched keeps its value from the config.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

import mlflow
import optuna
import typer
import yaml
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from socialrec.features.paths import project_dir
from socialrec.features.validation import did_you_mean
from socialrec.models.registry import (
    make_model,
    model_class,
    model_config,
    model_params,
    registered_models,
)
from socialrec.training import tracking
from socialrec.training.config import ConfigError, Layer, check, load_config, read_yaml
from socialrec.training.pipeline import (
    Prepared,
    objective_key,
    objective_values,
    prepare,
    validator_for,
)

log = logging.getLogger(__name__)
console = Console()

#: param -> (kind, *args); kinds: log / float (low, high), int (low, high), categorical (choices).
Space = dict[str, tuple[Any, ...]]

# the GNNs' default softmax loss (configs/spaces/socialgnn.yaml, the file the LastFM tune used)
_GNN_SPACE: Space = {
    "lr": ("log", 2e-3, 3e-2),
    "l2": ("log", 1e-5, 1e-2),
    "temperature": ("float", 0.05, 0.25),
    "num_layers": ("int", 1, 3),
    "users_per_step": ("categorical", [128, 256, 512, 1024]),
}

SPACES: dict[str, Space] = {
    "als": {
        "factors": ("categorical", [32, 64, 128]),
        "regularization": ("log", 1e-3, 30.0),
        "alpha": ("log", 0.1, 100.0),
        "iterations": ("int", 5, 50),
        "weighting": ("categorical", ["plain", "bm25"]),
    },
    "bpr": {
        "factors": ("categorical", [32, 64, 128]),
        "learning_rate": ("log", 1e-3, 0.2),
        "regularization": ("log", 1e-5, 0.1),
        "iterations": ("int", 20, 400),
    },
    "lightgcn": {"lr": ("log", 1e-3, 2e-2), "l2": ("log", 1e-6, 1e-3),
                 "num_layers": ("int", 1, 4)},  # BPR, as published
    "socialgnn": {**_GNN_SPACE, "social_weight": ("float", 0.0, 1.0)},
}


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """One value per parameter of ``space``."""
    out: dict[str, Any] = {}
    for name, (kind, *args) in space.items():
        if kind == "log":
            out[name] = trial.suggest_float(name, args[0], args[1], log=True)
        elif kind == "float":
            out[name] = trial.suggest_float(name, args[0], args[1])
        elif kind == "int":
            out[name] = trial.suggest_int(name, args[0], args[1])
        elif kind == "categorical":
            out[name] = trial.suggest_categorical(name, list(args[0]))
        else:
            raise ConfigError(f"search space of {name!r}: unknown kind {kind!r} "
                              "(log, float, int or categorical)")
    return out


def read_space(path: Path) -> Space:
    """A search space from YAML: ``{param: [kind, args...]}``."""
    raw = read_yaml(path)
    space: Space = {}
    for name, spec in raw.items():
        if not isinstance(spec, list) or not spec or spec[0] not in (
                "log", "float", "int", "categorical"):
            raise ConfigError(f"{path}: {name!r} must be [log|float|int|categorical, ...], "
                              f"got {spec!r}")
        space[str(name)] = tuple(spec)
    return space


def check_space(space: Space, model: str, where: str) -> None:
    """Refuse a searched parameter that ``model``'s config does not have (naming the nearest one),
    or whose bounds / choices are not values of that parameter (``where``: the space file)."""
    fields = model_config(model).model_fields
    problems = []
    for name, (kind, *args) in space.items():
        if name not in fields:
            hint = did_you_mean(name, fields) or f"; parameters: {', '.join(fields)}"
            problems.append(f"{where}: {name!r} is not a parameter of model {model!r}{hint}")
            continue
        info = fields[name]
        typed: Any = info.annotation
        if info.metadata:  # constraints such as ge=0
            typed = Annotated[typed, *info.metadata]
        adapter: TypeAdapter[Any] = TypeAdapter(typed)
        for value in _space_values(name, kind, args, where):
            try:
                adapter.validate_python(value, strict=True)
            except ValidationError as e:
                expected = e.errors()[0]["msg"].removeprefix("Input should be ")
                problems.append(f"{where}: {name}: {kind} gives {value!r}, but model.{model}."
                                f"{name} expects {expected}")
                break
    if problems:
        raise ConfigError("\n".join(problems))


def _space_values(name: str, kind: str, args: list[Any], where: str) -> list[Any]:
    """The values a space entry can give at its bounds, or all its choices."""
    if kind == "categorical" and len(args) == 1 and isinstance(args[0], list) and args[0]:
        return list(args[0])
    if kind == "int" and len(args) == 2:
        return list(args)
    numbers = all(isinstance(a, int | float) for a in args)
    if kind in ("log", "float") and len(args) == 2 and numbers:
        return [float(a) for a in args]  # what Optuna draws between them
    shape = "[categorical, [choice, ...]]" if kind == "categorical" else f"[{kind}, low, high]"
    raise ConfigError(f"{where}: {name}: expected {shape}, got {[kind, *args]}")


def trial_config(config: dict[str, Any], model: str, params: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(config)
    cfg["model"]["name"] = model
    section = dict(cfg["model"].get(model) or {})
    section.update(params)
    cfg["model"][model] = section
    return cfg


class _PruningValidator:
    """The early-stopping validator, also reporting each value to the trial (and pruning)."""

    def __init__(self, validate, trial: optuna.Trial) -> None:
        self.validate, self.trial, self.calls = validate, trial, 0

    def __call__(self, user_emb, item_emb) -> float:
        value = self.validate(user_emb, item_emb)
        self.calls += 1
        self.trial.report(value, self.calls)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at validation {self.calls} ({value:.4f})")
        return value


def run_trial(trial: optuna.Trial, prepared: Prepared, config: dict[str, Any], model: str,
              space: Space, metric: str, experiment_id: str, parent_tags: dict[str, str]
              ) -> float:
    params = suggest(trial, space)
    cfg = trial_config(config, model, params)
    trial_origin = f"tune trial {trial.number}"
    check(Layer(cfg, {("model", model, name): trial_origin for name in params}),
          default_origin="the tuned config")
    mlflow.start_run(experiment_id=experiment_id, run_name=f"{model}-trial{trial.number}",
                     nested=True, tags={**parent_tags, "trial": str(trial.number), "model": model})
    status = "FAILED"
    t = time.perf_counter()
    try:
        mlflow.log_params({f"model.{model}.{k}": v for k, v in params.items()})
        validator = _PruningValidator(validator_for(prepared.graph, cfg), trial)
        fitted = make_model(model, cfg["model"], validator=validator)
        fitted.fit(prepared.graph, show_progress=False)
        seconds = time.perf_counter() - t
        value, metrics = objective_values(prepared.graph, cfg, *fitted.embeddings(),
                                          cfg["evaluation"]["ks"])
        mlflow.log_metrics(tracking.flat_metrics("valid", metrics))
        mlflow.log_metric("seconds.fit", seconds)
        history = getattr(fitted, "history", None)
        if history is not None and history.valid:
            mlflow.log_metrics({"best_epoch": history.best_epoch,
                                "seconds.to_best_epoch": history.seconds_to_best})
            trial.set_user_attr("best_epoch", history.best_epoch)
        status = "FINISHED"
        return value
    except optuna.TrialPruned:
        mlflow.log_metric("seconds.fit", time.perf_counter() - t)
        status = "KILLED"  # MLflow's word for a run stopped on purpose
        raise
    finally:
        mlflow.set_tag("state", {"FINISHED": "complete", "KILLED": "pruned"}.get(status, "failed"))
        mlflow.end_run(status)


def best_yaml(config_file: Path, out: Path, model: str, params: dict[str, Any], value: float,
              metric: str, n_trials: int, command: str) -> str:
    """The experiment file: ``extends:`` the tuned config, the model and its best parameters."""
    extends = os.path.relpath(config_file.resolve(), out.resolve().parent)
    header = (
        f"# Best of {n_trials} Optuna trials for {model}: valid {metric} = {value:.4f}.\n"
        f"# Written by `{command}` on {dt.date.today().isoformat()}; chosen on the validation\n"
        "# split only (test never read). Keys not set here come from the extended file.\n"
    )
    body = {"extends": extends, "model": {"name": model, model: params}}
    return header + yaml.safe_dump(body, sort_keys=False)


def tune(config_file: Path, trials: int, model: str | None = None, out: Path | None = None,
         overrides: list[str] | None = None, space: Space | Path | None = None,
         timeout_s: float | None = None, seed: int | None = None, command: str = "") -> Path:
    """Search ``model``'s hyper-parameters on validation; write and return the best YAML's path.
    ``space``: a search space, or the YAML file of one (default: :data:`SPACES`)."""
    config = load_config([config_file], overrides or [])
    model = model or config["model"]["name"]
    if model not in registered_models():
        known = registered_models()
        raise ConfigError(f"--model: unknown model {model!r}{did_you_mean(model, known)}; "
                          f"models: {', '.join(known)}")
    where = f"--space {space}" if isinstance(space, Path) else f"the search space of {model}"
    space = read_space(space) if isinstance(space, Path) else space
    space = space if space is not None else SPACES.get(model)
    if not space:
        raise ConfigError(f"no search space for model {model!r}; pass --space FILE")
    check_space(space, model, where)
    metric = config["model"]["early_stop_metric"]
    # lightgcn inherits socialgnn's keys: materialise them so the YAML written is complete
    config["model"][model] = model_params(config["model"], model)
    prepared = prepare(config)
    _, experiment_id = tracking.setup(config)
    sampler = optuna.samplers.TPESampler(seed=seed if seed is not None
                                         else int(config["split"]["seed"]))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10)
              if model_class(model).early_stopping else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    name = config["dataset"]["name"]
    out = out or project_dir() / "configs" / f"{name}_{model}_tuned.yaml"
    tags = {"tune": f"{model}-{dt.datetime.now():%Y%m%d-%H%M%S}", "dataset": name}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"tune-{model}", tags=tags):
        mlflow.log_params({"tune.trials": trials, "tune.metric": f"valid.{metric}",
                           "tune.config": str(config_file), "tune.space": str(space)[:500]})
        study.optimize(
            lambda trial: run_trial(trial, prepared, config, model, space, metric, experiment_id,
                                    tags),
            n_trials=trials, timeout=timeout_s, gc_after_trial=True,
        )
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            raise RuntimeError("no trial completed; nothing to write")
        best = study.best_trial
        best_value = float(study.best_value)
        params = {**{k: v for k, v in config["model"][model].items() if k != "seed"},
                  **best.params}
        mlflow.log_metrics({f"best.valid.{objective_key(config)}": best_value,
                            "trials.complete": len(completed),
                            "trials.pruned": len(study.trials) - len(completed)})
        mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
        text = best_yaml(config_file, out, model, params, best_value, metric, len(study.trials),
                         command or f"socialrec tune --config {config_file} --trials {trials}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        mlflow.log_text(text, "best.yaml")
    return out


tune_app = typer.Typer(help="Hyper-parameter search on the validation split (Optuna).",
                       no_args_is_help=True)


@tune_app.callback(invoke_without_command=True)
def tune_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Dataset or experiment YAML.")],
    trials: Annotated[int | None, typer.Option(
        help="Number of Optuna trials (default 20; with --budget-minutes: as many as fit).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model to tune (default: model.name).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Best config YAML (default configs/<dataset>_<model>_tuned.yaml).")] = None,
    space: Annotated[Path | None, typer.Option(
        help="Search space YAML (default: built in).")] = None,
    timeout_s: Annotated[float | None, typer.Option(
        help="Start no trial after this many seconds.")] = None,
    budget_minutes: Annotated[float | None, typer.Option(
        help="A time-budgeted search: trials until this many minutes are spent (--trials then "
             "only caps them; default 1000).")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampler seed (default split.seed).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Override: key.path=value (YAML value).")] = None,
) -> None:
    """Tune one model on VALIDATION; each trial is an MLflow run; writes the best as YAML."""
    import sys

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if budget_minutes is not None:  # a time-budgeted search: the budget, not a trial count
        budget_s = budget_minutes * 60
        timeout_s = budget_s if timeout_s is None else min(timeout_s, budget_s)
    n_trials = trials if trials is not None else (20 if budget_minutes is None else 10_000)
    try:
        path = tune(config, n_trials, model=model, out=out, overrides=set_ or [],
                    space=space, timeout_s=timeout_s, seed=seed,
                    command="socialrec tune " + " ".join(sys.argv[2:]))
    except ConfigError as err:
        console.print(f"[red]config error:[/red] {err}")
        raise typer.Exit(2) from None
    console.print(path.read_text())
    console.print(f"best config written to {path}")
