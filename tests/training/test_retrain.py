"""``socialrec retrain`` on a small world split in time: the first weeks are the base dataset a
champion was trained on, the last days reach the retrain through the event store.

Covers: ids appended never renumbered, every refused event counted by reason, lineage on the run
and the registered version, the gate refusing a regression (nothing registered), the lock (a
second retrain refuses), and a repeated retrain on the same data doing nothing."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from socialrec.features.events import EventStore, Exposure, Feedback
from socialrec.features.idmap import IdMap
from socialrec.features.synthetic import DAY, START_TS, generate
from socialrec.training import tracking
from socialrec.training.config import load_config
from socialrec.training.lease import Lease, LeaseHeld
from socialrec.training.pipeline import run_training
from socialrec.training.retrain import RetrainError, download_bundle, gate_row, retrain

DAYS = 30
BASE_DAYS = 26  # the base dataset; the last days arrive as feedback
AS_OF = datetime(2026, 1, 10, 12, tzinfo=UTC)
NAME = "socialrec-tinyloop"


def world_files(root: Path) -> dict:
    """The world's first BASE_DAYS as parquet tables; the rest returned as the future."""
    world = generate(n_users=500, n_items=300, n_communities=5, seed=3, days=DAYS,
                     choices_per_user=12.0)
    cut = START_TS + BASE_DAYS * DAY
    inter = world.interactions
    future = inter[inter.ts >= cut]
    gone = sorted(set(world.items.item_id) - set(future.item_id))[0]  # discontinued, no events
    items = world.items.assign(deleted=world.items.item_id == gone)
    tables = {"interactions": inter[inter.ts < cut], "social": world.social,
              "shares": world.shares[world.shares.ts < cut], "items": items.drop(
                  columns="community"), "users": world.users.drop(columns="community")}
    files = {}
    for table, frame in tables.items():
        path = root / f"{table}.parquet"
        frame.to_parquet(path, index=False)
        files[table] = {"path": str(path)}
    return {"files": files, "future": future, "cut": cut, "gone": gone, "items": items}


def launch(root: Path, items: pd.DataFrame) -> None:
    """The shop adds a product to its catalogue after the champion was trained."""
    launched = pd.DataFrame({"item_id": ["i_new"], "category": ["cat_0"], "price": [9.0],
                             "deleted": [False]})
    pd.concat([items.drop(columns="community"), launched], ignore_index=True).to_parquet(
        root / "items.parquet", index=False)


def config_for(root: Path, store: str, extra: tuple[str, ...] = ()) -> dict:
    world = (root / "world.yaml").read_text()
    return load_config([], [
        "dataset.name=tinyloop", "dataset.source=files", f"dataset.files={world}",
        "split.method=temporal", "split.ratios=[0.8, 0.1, 0.1]",
        "model.name=socialgnn", "model.early_stop_metric=ndcg@20",
        "model.socialgnn={loss: bpr, embedding_dim: 16, num_layers: 2, batch_size: 2048, "
        "lr: 0.01, epochs: 15, patience: 4, num_threads: 1}",
        "index.exact_threshold=1000000",
        f"tracking.uri=sqlite:///{root}/mlruns.db", f"tracking.artifact_root={root}/mlruns",
        f"serving.event_store={store}", "retrain.fine_tune={epochs: 8, patience: 2}",
        "retrain.gate_tolerance=0.25", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A champion (version 1) trained on the base dataset, and the world's future."""
    import yaml

    root = tmp_path_factory.mktemp("loop")
    world = world_files(root)
    (root / "world.yaml").write_text(yaml.safe_dump(world["files"], default_flow_style=True,
                                                    width=10_000).strip())
    cfg = config_for(root, f"sqlite:///{root}/unused.db")
    result = run_training(cfg, show_progress=False)
    assert result.aliases_set == ["champion"]
    launch(root, world["items"])
    return root, world


@pytest.fixture
def loop(trained, tmp_path):
    """A private copy of the registry, an event store holding the world's future (stamped into
    the day before AS_OF) plus bad events, and the config reading them."""
    root, world = trained
    shutil.copy(root / "mlruns.db", tmp_path / "mlruns.db")
    store_url = f"sqlite:///{tmp_path}/events.db"
    cfg = config_for(root, store_url, (f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",))
    future = world["future"]
    span = (DAYS - BASE_DAYS) * DAY
    start = AS_OF - timedelta(hours=20)
    stamp = [start + timedelta(seconds=int((t - world["cut"]) / span * 18 * 3600))
             for t in future.ts]
    events = [Feedback(f"f{n}", None, ts, u, i, e, 0.0)
              for n, (ts, u, i, e) in enumerate(zip(stamp, future.user_id, future.item_id,
                                                    future.event, strict=True))
              if e != "rate"]
    with EventStore(store_url) as store:
        store.log_exposures([Exposure("push-1", start, "push_targets", None, None, "name/1",
                                      "c1", "u1", "i1", 0, 1.0)])
        # a brand-new user who joins from u1's share of a brand-new item
        store.log_exposures([Exposure("share-1", start, "share_partners", None, None, "name/1",
                                      "u1", "u1", "i_new", 0, 1.0)])
        bad = [Feedback("b1", "no-such-request", start, "u2", "i2", "click"),
               Feedback("b2", None, AS_OF + timedelta(days=2), "u2", "i2", "click"),
               Feedback("b3", None, datetime(2001, 1, 1, tzinfo=UTC), "u2", "i2", "click"),
               Feedback("b4", None, start, "u2", world["gone"], "purchase"),  # discontinued
               Feedback("b5", None, start, "u2", None, "unsubscribe")]
        good = [Feedback("g1", "push-1", start, "u1", "i1", "push_open"),
                Feedback("g2", "share-1", start, "newbie", "i_new", "join")]
        store.log_feedback(events + bad + good)
    return cfg, tmp_path


def client_of(cfg: dict) -> MlflowClient:
    return tracking.setup(cfg)[0]


def test_retrain_appends_ids_counts_refusals_and_registers_a_challenger(loop):
    cfg, tmp = loop
    result = retrain(cfg, as_of=AS_OF, show_progress=False)
    assert result.status == "trained", result.note
    assert result.parent_version == "1" and result.version == "2"
    assert result.aliases == ["challenger"]
    client = client_of(cfg)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"

    # every refused event is counted under its reason; nothing is lost
    store = result.store
    assert store is not None
    assert store.refused == {"future_timestamp": 1, "before_data_window": 1,
                             "unknown_request_id": 1, "deleted_item": 1}
    assert store.ignored == {"unsubscribe": 1}
    assert store.used + store.total_refused + sum(store.ignored.values()) == store.read

    # ids: every index of the parent's IdMaps means the same in the child
    parent = download_bundle(client, NAME, "1", tmp / "p")
    child = download_bundle(client, NAME, "2", tmp / "c")
    for table, added in (("users.npy", "newbie"), ("items.npy", "i_new")):
        old, new = IdMap.load(parent / table).ids, IdMap.load(child / table).ids
        assert new[:len(old)] == old
        assert added not in old and added in new[len(old):]
    # the join on u1's share request: a share record and a friendship
    assert ("u1", "newbie") in {(s, d) for s, d in zip(*store.social[["src", "dst"]].T.values,
                                                        strict=True)}
    # the warm start kept the parent's rows
    assert result.warm_start["users_kept"] == len(IdMap.load(parent / "users.npy"))

    # lineage on the registered version and on its run
    tags = client.get_model_version(NAME, "2").tags
    assert tags["lineage.parent_version"] == "1"
    assert tags["lineage.refused.unknown_request_id"] == "1"
    assert tags["lineage.events_used"] == str(store.used)
    assert tags["lineage.window_end"] == AS_OF.isoformat(timespec="seconds")
    assert tags["lineage.start"] == "warm"
    assert tags["gate.verdict"] == "passed"
    run = client.get_run(result.run_id)
    assert run.data.tags["lineage.parent_version"] == "1"
    assert run.data.tags["retrain.status"] == "trained"
    assert "gate.champion.test.recommend.ndcg_at_20" in run.data.metrics

    # the same data again: nothing new to learn, nothing registered
    again = retrain(cfg, as_of=AS_OF, show_progress=False)
    assert again.status == "unchanged" and again.run_id == result.run_id
    assert len(client.search_model_versions(f"name='{NAME}'")) == 2


def test_the_gate_refuses_a_regression_and_registers_nothing(loop):
    cfg, _ = loop

    def shuffled(train: pd.DataFrame) -> pd.DataFrame:
        rng = np.random.default_rng(0)
        return train.assign(item_id=rng.permutation(train.item_id.to_numpy()))

    result = retrain(cfg | {"retrain": {**cfg["retrain"], "gate_tolerance": 0.0}}, as_of=AS_OF,
                     cold=True, show_progress=False, train_hook=shuffled)
    assert result.status == "refused"
    assert not result.gate_passed
    assert any(row.candidate < row.champion for row in result.gate)
    assert "gate refused" in result.note
    client = client_of(cfg)
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
    assert tracking.alias_holder(client, NAME, "challenger") is None
    run = client.get_run(result.run_id)
    assert run.data.tags["gate.verdict"] == "refused"
    assert run.data.tags["retrain.status"] == "refused"


def test_a_second_retrain_refuses_while_one_runs(loop):
    cfg, _ = loop
    with (EventStore(cfg["serving"]["event_store"]) as store,
          Lease(store.engine, f"retrain:{NAME}", ttl_s=60),
          pytest.raises(LeaseHeld, match="held by")):
        retrain(cfg, as_of=AS_OF, show_progress=False)
    client = client_of(cfg)
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
    assert not mlflow.search_runs(experiment_names=["socialrec-tinyloop"], output_format="list",
                                  filter_string="tags.`retrain.status` = 'trained'")


def test_nothing_to_validate_on_is_an_error(loop):
    cfg, _ = loop
    with pytest.raises(RetrainError, match="nothing to validate"):
        retrain(cfg, as_of=AS_OF + timedelta(days=30), show_progress=False)


def test_a_lease_is_exclusive_and_a_dead_one_is_taken_over(tmp_path):
    with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        first = Lease(store.engine, "job", ttl_s=60)
        first.acquire()
        with pytest.raises(LeaseHeld):
            Lease(store.engine, "job", ttl_s=60).acquire()
        first.release()
        with Lease(store.engine, "job", ttl_s=60):
            pass
        Lease(store.engine, "job", ttl_s=-1).acquire()  # its holder died: expired at once
        with Lease(store.engine, "job", ttl_s=60) as taken:
            assert taken.holder


def test_the_gate_refuses_a_significant_shortfall_and_passes_noise():
    rng = np.random.default_rng(0)
    champion = rng.random(2000)
    # 10 % worse on every query: significant over 2,000 queries
    assert not gate_row("m", champion, champion * 0.9, tolerance=0.01, alpha=0.05).passed
    # the same mean shortfall from noise on 12 queries cannot be told from none
    few = rng.random(12)
    noisy = few + rng.normal(0, 0.3, 12)
    noisy += few.mean() * 0.9 - noisy.mean()
    row = gate_row("m", few, noisy, tolerance=0.01, alpha=0.05)
    assert row.candidate < row.champion and row.passed and row.queries == 12
    # without a significance level any shortfall beyond the tolerance refuses
    assert not gate_row("m", few, noisy, tolerance=0.01, alpha=None).passed
    assert gate_row("m", champion, champion * 0.995, tolerance=0.01, alpha=None).passed
