"""``socialrec uplift train --alias champion --set-alias challenger`` end to end on a tiny world:
the champion's bundle is downloaded from the registry, rows are built from the event store's
campaigns, the learner is chosen on a held-out campaign, and a new version carrying the uplift
model is registered with the alias, naming its parent."""

from __future__ import annotations

from datetime import UTC, datetime

import mlflow
import numpy as np
from typer.testing import CliRunner

from socialrec.evaluation.uplift_worlds import WorldSpec, campaign_log, make_world
from socialrec.features.events import EventStore
from socialrec.models.bundle import ModelBundle
from socialrec.training import tracking
from socialrec.training.config import format_names, load_config
from socialrec.training.uplift_cli import download_alias, uplift_app
from socialrec.training.uplift_sim import log_campaigns, world_bundle

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def test_uplift_train_from_the_champion_registers_a_challenger_with_the_uplift_model(tmp_path):
    world = make_world(WorldSpec("tiny", "sleeping_dogs", n_users=1500, n_items=20, seed=7))
    bundle_dir = world_bundle(world).save(tmp_path / "bundle")
    overrides = [f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
                 f"tracking.artifact_root={tmp_path}/mlruns",
                 "uplift.min_control_users=50", "uplift.min_treated_users=50",
                 "uplift.validation_share=0.34", "uplift.candidates=[t, x]",
                 "uplift.lightgbm.n_estimators=30", "uplift.lightgbm.min_child_samples=50",
                 "uplift.effect_lightgbm.n_estimators=30",
                 "uplift.effect_lightgbm.min_child_samples=100"]
    cfg = load_config([], overrides)
    name = format_names(cfg)["registered_model"]
    client, _ = tracking.setup(cfg)
    with mlflow.start_run(run_name="champion"):
        champion = tracking.log_bundle(bundle_dir, name)
    client.set_registered_model_alias(name, "champion", champion)

    url = f"sqlite:///{tmp_path}/events.db"
    rows = campaign_log(world, [0, 1, 2], holdout=0.3, exploration=0.3, seed=0)
    with EventStore(url) as store:
        log_campaigns(store, world, rows, T0)

    result = CliRunner().invoke(uplift_app, [
        "train", "--alias", "champion", "--set-alias", "challenger", "--store", url,
        "--now", "2024-04-01T00:00:00", *(a for o in overrides for a in ("--set", o))])
    assert result.exit_code == 0, result.output
    assert "4,500 (campaign, user) rows in 3 campaigns" in result.output

    challenger = client.get_model_version_by_alias(name, "challenger")
    assert str(challenger.version) != champion
    assert challenger.tags["uplift_parent_version"] == champion
    path, version = download_alias(cfg, "challenger", tmp_path / "got")
    assert version == str(challenger.version)
    got = ModelBundle.load(path)
    assert got.uplift is not None and got.uplift.manifest["learner"] in {"t", "x"}
    evidence = got.uplift.manifest["evidence"]
    assert evidence["parent_version"] == champion and evidence["rows"] == 4500
    assert set(evidence["selection"]["qini"]) == {"t", "x"}
    assert got.users.to_ids(np.arange(3)) == ["u0", "u1", "u2"]  # the champion's bundle
    assert np.array_equal(got.user_emb, world.user_emb)
    effects = got.uplift.effects(np.zeros((4, len(got.uplift.features)), dtype=np.float32))
    assert effects.conversion.shape == (4, 2)
    # the champion itself is unchanged: no uplift model
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion
