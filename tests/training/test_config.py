"""Layered configuration: defaults < files (extends) < --set overrides, and its validation: every
key of the resolved config is typed, and a problem names where it was set, its key path and (for
a typo) the nearest valid key."""

import inspect
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from socialrec.features import loader
from socialrec.features.experiments import load_experiments
from socialrec.features.graph import EventWeights
from socialrec.features.synthetic import SyntheticConfig, generate
from socialrec.features.tables import EVENT_TYPES
from socialrec.models.registry import model_config, registered_models
from socialrec.training.benchmark import layered
from socialrec.training.config import (
    DEFAULTS,
    ConfigError,
    Layer,
    check,
    config_model,
    layer_over,
    load_config,
    resolve,
)
from socialrec.training.tune import SPACES, check_space, read_space


def test_defaults_alone_resolve():
    cfg = load_config()
    assert cfg["model"]["name"] == "socialgnn"
    assert cfg["model"]["socialgnn"]["embedding_dim"] == 64


def test_files_then_overrides_win(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("dataset: {name: base}\nmodel: {socialgnn: {lr: 0.01}}\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("extends: base.yaml\nmodel: {socialgnn: {num_layers: 2}}\n")
    cfg = load_config([exp], ["model.socialgnn.lr=0.5", "evaluation.ks=[5, 50]"])
    assert cfg["dataset"]["name"] == "base"
    assert cfg["model"]["socialgnn"]["num_layers"] == 2
    assert cfg["model"]["socialgnn"]["lr"] == 0.5
    assert cfg["evaluation"]["ks"] == [5, 50]
    # untouched defaults survive the merge
    assert cfg["model"]["socialgnn"]["embedding_dim"] == 64


def test_relative_data_paths_resolve_against_their_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "c.yaml"
    f.write_text("dataset: {source: files, files: {interactions: {path: data/x.csv}}}\n")
    cfg = load_config([f])
    assert cfg["dataset"]["files"]["interactions"]["path"] == str(
        tmp_path / "sub" / "data" / "x.csv"
    )


def test_typo_in_a_closed_section_is_refused(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("tracking: {urii: sqlite:///x.db}\n")
    with pytest.raises(ConfigError, match="urii"):
        load_config([f])


def test_unknown_top_level_section_is_refused(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("modle: {name: als}\n")
    with pytest.raises(ConfigError, match="modle"):
        load_config([f])


def test_invalid_yaml_names_file_and_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("model:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml, line \d+, column \d+"):
        load_config([f])


def test_extends_loop_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config([tmp_path / "a.yaml"])


def test_override_needs_equals():
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config([], ["model.lr"])


def test_environment_wins_for_data_root_and_tracking(monkeypatch):
    monkeypatch.setenv("SOCIALREC_DATA_ROOT", "/data/here")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://x/y")
    cfg = load_config()
    assert cfg["dataset"]["root"] == "/data/here"
    assert cfg["tracking"]["uri"] == "postgresql://x/y"


# --- validation: every key of the resolved config is typed, wherever it comes from ---------------

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

TYPOS = [  # (misspelt key, value, the suggestion, what else the config needs)
    ("split.ratio", [0.8, 0.2], "ratios", {}),
    ("model.socialgnn.lrr", 0.1, "lr", {}),
    ("dataset.on_eror", "skip", "on_error", {"dataset.source": "lastfm_hetrec2011"}),
    ("graph.event_weights.purchse", 3.0, "purchase", {}),
]


def nested(settings: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        *sections, last = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = value
    return out


@pytest.mark.parametrize(("key", "value", "suggestion", "context"), TYPOS)
def test_misspelt_key_in_a_file_is_refused_naming_file_key_and_suggestion(
        tmp_path, key, value, suggestion, context):
    f = tmp_path / "typo.yaml"
    f.write_text(yaml.safe_dump(nested({**context, key: value})))
    with pytest.raises(ConfigError) as err:
        load_config([f])
    assert str(err.value) == f"{f}: {key}: unknown key (did you mean '{suggestion}'?)"


@pytest.mark.parametrize(("key", "value", "suggestion", "context"), TYPOS)
def test_misspelt_key_via_set_is_refused_naming_the_override(key, value, suggestion, context):
    overrides = [f"{k}={v}" for k, v in {**context, key: value}.items()]
    with pytest.raises(ConfigError) as err:
        load_config([], overrides)
    assert str(err.value) == (f"--set {overrides[-1]}: {key}: unknown key "
                              f"(did you mean '{suggestion}'?)")


def test_wrong_type_names_the_key_and_what_was_expected(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("split: {ratios: abc}\n")
    with pytest.raises(ConfigError) as err:
        load_config([f])
    assert str(err.value) == f"{f}: split.ratios: expected a valid list, got 'abc'"

    with pytest.raises(ConfigError, match=r"^--set split.ratios=\[0.8, 0.3\]: split.ratios: "
                                          r"expected \[train, valid, test\]"):
        load_config([], ["split.ratios=[0.8, 0.3]"])
    with pytest.raises(ConfigError, match=r"evaluation.protocol: expected 'full' or 'sampled', "
                                          r"got 'ful' \(did you mean 'full'\?\)"):
        load_config([], ["evaluation.protocol=ful"])
    # YAML 1.1 reads 1e-3 as a string: refused with the spelling that is a number
    with pytest.raises(ConfigError, match=r"model.socialgnn.lr: expected a valid number, "
                                          r"got '1e-3' \(YAML reads 1e-3 as text; write 0.001\)"):
        load_config([], ["model.socialgnn.lr=1e-3"])
    with pytest.raises(ConfigError, match=r"dataset.synthetic.n_users: expected a valid integer, "
                                          r"got 20.5"):
        load_config([], ["dataset.synthetic.n_users=20.5"])


def test_values_are_checked_where_their_code_lives():
    cases = {
        "model.name=socialgnnn": "model.name: unknown model 'socialgnnn' (did you mean "
                                 "'socialgnn'?)",
        "model.early_stop_metric=ndgc@20": "unknown metric 'ndgc' in 'ndgc@20' (did you mean "
                                           "'ndcg'?)",
        "dataset.source=lastfm_hetrec": "dataset.source: unknown source 'lastfm_hetrec' (did you "
                                        "mean 'lastfm_hetrec2011'?)",
        "evaluation.share_hops=3": "evaluation.share_hops: expected 1 or 2, got 3",
        "index.hnsw_m=0": "index.hnsw_m: expected a value greater than 0, got 0",
        "tracking.experiment=x-{data}": "tracking.experiment: 'x-{data}': the only placeholder "
                                        "is {dataset}",
        "serving.experiments=[a]": "serving.experiments: expected a valid string, got ['a']",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError) as err:
            load_config([], [override])
        assert str(err.value).startswith(f"--set {override}: "), override
        assert message in str(err.value), override


def test_a_source_reads_only_its_own_options(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("dataset: {source: beibei_gbgcn, ties_from: none, valid_fraction: 0.2}\n")
    assert load_config([f])["dataset"]["ties_from"] == "none"
    with pytest.raises(ConfigError, match=r"dataset.ties_from: unknown key"):
        load_config([f], ["dataset.source=lastfm_hetrec2011"])  # lastfm reads no ties_from
    with pytest.raises(ConfigError, match=r"dataset.on_error: unknown key"):
        load_config([], ["dataset.on_error=skip"])  # the synthetic world reads no file
    with pytest.raises(ConfigError, match=r"dataset.valid_fraction: expected a value less than "
                                          r"or equal to 1, got 1.5"):
        load_config([f], ["dataset.valid_fraction=1.5"])
    with pytest.raises(ConfigError, match="with release: graphrec set split: none"):
        load_config([], ["dataset.source=epinions_tang", "dataset.release=graphrec"])


def test_the_file_that_sets_a_key_is_named_through_extends(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {socialgnn: {lr: fast}}\n")
    (tmp_path / "exp.yaml").write_text("extends: base.yaml\nsplit: {seed: 1}\n")
    with pytest.raises(ConfigError) as err:
        load_config([tmp_path / "exp.yaml"])
    assert str(err.value).startswith(f"{tmp_path / 'base.yaml'}: model.socialgnn.lr: ")


def test_every_problem_is_reported_at_once(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("split: {ratio: [0.5, 0.5]}\nevaluation: {ks: [ten]}\n")
    with pytest.raises(ConfigError) as err:
        load_config([f], ["tracking.urii=x"])
    lines = str(err.value).splitlines()
    assert lines[0] == "3 problems:"
    assert f"  {f}: split.ratio: unknown key (did you mean 'ratios'?)" in lines
    assert f"  {f}: evaluation.ks[0]: expected a valid integer, got 'ten'" in lines
    assert "  --set tracking.urii=x: tracking.urii: unknown key (did you mean 'uri'?)" in lines


def test_lightgcn_is_validated_with_what_it_inherits(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("model: {lightgcn: {loss: softmax, item_bias: true}, socialgnn: {lr: x}}\n")
    with pytest.raises(ConfigError) as err:
        load_config([f], ["model.lightgcn.loss=ials"])
    # the inherited bad lr is reported once, where it is set; the clash names both origins
    assert sorted(str(err.value).splitlines()) == sorted([
        "2 problems:",
        f"  {f}: model.socialgnn.lr: expected a valid number, got 'x'",
        f"  {f}, --set model.lightgcn.loss=ials: model.lightgcn: item_bias needs loss 'softmax', "
        "got 'ials'",
    ])


def test_the_environment_is_named_as_an_origin(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert resolve().origin(("tracking", "uri")) == "environment MLFLOW_TRACKING_URI"


def test_a_plain_dict_is_checked_with_a_default_origin():
    cfg = load_config()
    cfg["model"]["als"]["factor"] = 8
    with pytest.raises(ConfigError, match=r"^tune trial 3: model.als.factor: unknown key "
                                          r"\(did you mean 'factors'\?\)$"):
        check(cfg, default_origin="tune trial 3")


# --- defaults.yaml and the typed models cannot drift ---------------------------------------------

_KEY_LINE = re.compile(
    r"^(?P<indent> *)(?P<comment># ?)?(?P<more>[ -]*)(?P<key>[A-Za-z_]\w*):(\s|$)")


def documented_keys(text: str) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """The key paths of defaults.yaml: (keys, keys documented as optional in comments). A
    commented key is YAML with '# ' in front, the '#' at its parent's key indentation or deeper
    (continuation comments, further right, are prose); list items count as their list's keys."""
    keys, optional = set(), set()
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = _KEY_LINE.match(line)
        if not m or (m["comment"] and len(m["indent"]) > 8):
            continue
        indent = len(m["indent"]) + len(m["more"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        (optional if m["comment"] else keys).add(tuple(k for _, k in stack))
    return keys, optional


def mounts(model: type[BaseModel], path: tuple[str, ...] = (),
           found: dict | None = None) -> dict[type[BaseModel], set[tuple[str, ...]]]:
    """Every typed model below ``model`` -> the key paths it is mounted at (list items at their
    list's path)."""
    found = {} if found is None else found
    found.setdefault(model, set()).add(path)
    for name, info in model.model_fields.items():
        for sub in _models_in(info.annotation):
            mounts(sub, (*path, name), found)
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def test_every_key_of_defaults_validates_and_every_typed_field_is_in_defaults():
    text = DEFAULTS.read_text()
    check(Layer.of(yaml.safe_load(text), "defaults"))  # every key of defaults.yaml validates
    keys, optional = documented_keys(text)
    assert keys == set(_paths(yaml.safe_load(text)))  # the scanner reads the YAML right
    documented = keys | optional
    where = mounts(config_model("synthetic"))
    for options in set(loader.SOURCE_OPTIONS.values()):  # each real source's dataset options
        where.setdefault(options, set()).add(("dataset",))
    # a model used in several places (a TableSpec per table, socialgnn's config for lightgcn)
    # is documented where one of them is
    undocumented = sorted(f"{model.__name__}.{name}" for model, paths in where.items()
                          for name in model.model_fields
                          if not any((*path, name) in documented for path in paths))
    assert not undocumented, f"typed but not in configs/defaults.yaml: {undocumented}"
    typed = {(*path, name) for model, paths in where.items() for path in paths
             for name in model.model_fields}
    stale = sorted(".".join(p) for p in optional if p not in typed)
    assert not stale, f"documented in configs/defaults.yaml but not typed: {stale}"


def _paths(data: dict, prefix: tuple[str, ...] = ()):
    for key, value in data.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


def test_synthetic_section_is_generates_signature():
    params = inspect.signature(generate).parameters
    assert {name: p.default for name, p in params.items()} == SyntheticConfig().model_dump()


def test_event_weights_are_the_event_kinds():
    assert tuple(EventWeights.model_fields) == EVENT_TYPES


# --- every shipped config validates --------------------------------------------------------------

SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml")
                 if p.name not in ("defaults.yaml", "experiments.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_validates(name):
    load_config([CONFIGS / name])


def test_the_shipped_experiments_file_loads():
    load_experiments(CONFIGS / "experiments.yaml")


@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS / "ablations").glob("*.yaml")))
def test_every_ablation_validates_on_lastfm(name):
    # results/lastfm.md is the benchmark these rows were made for (README)
    layer_over(load_config([CONFIGS / "lastfm.yaml"]), CONFIGS / "ablations" / name)


#: the model each shipped search space was written for (its comment says so)
SPACE_MODELS = {"als": "als", "als_wide": "als", "bpr": "bpr", "socialgnn": "socialgnn",
                "socialgnn_ials": "socialgnn", "socialgnn_refine": "socialgnn"}


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIGS / "spaces").glob("*.yaml")))
def test_every_shipped_search_space_validates(name):
    check_space(read_space(CONFIGS / "spaces" / f"{name}.yaml"), SPACE_MODELS[name], name)


def test_the_built_in_search_spaces_validate():
    for model, space in SPACES.items():
        check_space(space, model, f"SPACES[{model!r}]")


def test_a_search_space_names_only_parameters_of_its_model(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("lr: [log, 0.001, 0.01]\nnum_layer: [int, 1, 3]\nl2: [float, 1, 2]\n"
                 "temperature: [int, 1, 2]\nsocial_norm: [categorical, [joint, seperate]]\n")
    with pytest.raises(ConfigError) as err:
        check_space(read_space(f), "socialgnn", f"--space {f}")
    assert str(err.value).splitlines() == [
        f"--space {f}: 'num_layer' is not a parameter of model 'socialgnn' (did you mean "
        "'num_layers'?)",
        f"--space {f}: social_norm: categorical gives 'seperate', but model.socialgnn.social_norm "
        "expects 'joint' or 'separate'",
    ]
    f.write_text("num_layers: [float, 1, 3]\n")
    with pytest.raises(ConfigError, match=r"num_layers: float gives 1.0, but "
                                          r"model.socialgnn.num_layers expects a valid integer"):
        check_space(read_space(f), "socialgnn", "x")
    f.write_text("factors: [int, 8]\n")
    with pytest.raises(ConfigError, match=r"factors: expected \[int, low, high\]"):
        check_space(read_space(f), "als", "x")


def test_an_ablation_file_with_a_typo_is_refused_naming_it(tmp_path):
    config = load_config()
    f = tmp_path / "ablation.yaml"
    f.write_text("model: {socialgnn: {social_wieght: 0.0}}\n")
    with pytest.raises(ConfigError) as err:
        layered(config, f"socialgnn@{f}")
    assert str(err.value) == (f"{f}: model.socialgnn.social_wieght: unknown key "
                              "(did you mean 'social_weight'?)")
    with pytest.raises(ConfigError, match=r"--models lightgnc: unknown model 'lightgnc' "
                                          r"\(did you mean 'lightgcn'\?\)"):
        layered(config, "lightgnc")
    f.write_text("model: {socialgnn: {social_weight: 0.0}}\n")
    model, label, cfg = layered(config, f"socialgnn@{f}")
    assert (model, label, cfg["model"]["socialgnn"]["social_weight"]) == (
        "socialgnn", "socialgnn@ablation", 0.0)


def test_every_registered_model_has_a_typed_section():
    sections = config_model("synthetic").model_fields["model"].annotation.model_fields
    for name in registered_models():
        assert sections[name].annotation == model_config(name) | None


def test_shipped_configs_are_found_by_name(tmp_path, monkeypatch):
    from socialrec.training.config import CONFIG_DIR, config_path

    monkeypatch.chdir(tmp_path)
    assert config_path("lastfm") == CONFIG_DIR / "lastfm.yaml"
    assert config_path("ablations/no_social.yaml") == CONFIG_DIR / "ablations/no_social.yaml"
    assert load_config(["lastfm"]) == load_config([CONFIG_DIR / "lastfm.yaml"])
    (tmp_path / "lastfm.yaml").write_text("dataset: {name: mine}\n")  # a file given wins
    assert config_path("lastfm.yaml") == Path("lastfm.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(["no_such_config"])
