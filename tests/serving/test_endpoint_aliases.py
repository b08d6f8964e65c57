"""Serving by task: each endpoint no experiment routes follows its own registry alias
(SOCIALREC_ALIAS_<ENDPOINT>), the shared SOCIALREC_ALIAS otherwise."""

from __future__ import annotations

import pytest

from socialrec.models.bundle import ModelBundle
from socialrec.serving.schemas import PushRequest, RecommendRequest, ShareRequest


class AliasSource:
    """A registry stand-in: every alias is its own version of the same bundle."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        self.loaded: list[str] = []

    def resolve(self, alias: str) -> str:
        return f"v-{alias}"

    def label(self, version: str) -> str:
        return f"fake/{version}"

    def load(self, alias: str, version: str) -> ModelBundle:
        self.loaded.append(alias)
        return self.bundle

    def last_known(self, alias: str) -> str | None:
        return None

    def describe(self) -> str:
        return "a stand-in registry"


@pytest.fixture
def service_with(bundle, tmp_path, monkeypatch):
    import socialrec.serving.service as service_module

    started = []

    def start(env: dict[str, str]):
        source = AliasSource(bundle)
        monkeypatch.setattr(service_module, "source_from_env", lambda: source)
        if "SOCIALREC_EXPERIMENTS" not in env:
            monkeypatch.delenv("SOCIALREC_EXPERIMENTS", raising=False)
        monkeypatch.setenv("SOCIALREC_EVENT_STORE", f"sqlite:///{tmp_path / 'events.db'}")
        monkeypatch.setenv("SOCIALREC_POLL_SECONDS", "0")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        started.append(service_module.SocialRec())
        return started[-1], source

    yield start
    for svc in started:
        svc.close()


def test_each_endpoint_follows_its_own_alias(service_with):
    svc, source = service_with({"SOCIALREC_ALIAS": "champion",
                                "SOCIALREC_ALIAS_PUSH_TARGETS": "push-best"})
    assert sorted(source.loaded) == ["champion", "push-best"]
    push = svc.push_targets(PushRequest(item_id="i1", k=3))
    assert push.model_version == "fake/v-push-best"
    assert svc.recommend(RecommendRequest(user_id="u3", k=3)).model_version == "fake/v-champion"
    share = svc.share_partners(ShareRequest(user_id="u3", item_id="i1", k=3))
    assert share.model_version == "fake/v-champion"


def test_without_endpoint_aliases_every_endpoint_shares_one(service_with):
    svc, source = service_with({"SOCIALREC_ALIAS": "champion"})
    assert source.loaded == ["champion"]
    assert svc.push_targets(PushRequest(item_id="i1", k=3)).model_version == "fake/v-champion"
    assert svc.recommend(RecommendRequest(user_id="u3", k=3)).model_version == "fake/v-champion"


def test_experiment_variants_on_the_default_alias_get_the_endpoints_own(
        service_with, experiments_file):
    """conftest's experiments route every endpoint to variants on ``champion``: a push still goes
    to the push alias, and every variant of the push experiment with it."""
    svc, source = service_with({"SOCIALREC_ALIAS": "champion",
                                "SOCIALREC_ALIAS_PUSH_TARGETS": "push-best",
                                "SOCIALREC_EXPERIMENTS": str(experiments_file)})
    assert sorted(source.loaded) == ["champion", "push-best"]
    for campaign in ("c1", "c2", "c3", "c4"):
        push = svc.push_targets(PushRequest(item_id="i1", k=3, campaign_id=campaign))
        assert push.experiment == "push" and push.model_version == "fake/v-push-best"
    rec = svc.recommend(RecommendRequest(user_id="u3", k=3))
    assert rec.experiment == "rec" and rec.model_version == "fake/v-champion"
