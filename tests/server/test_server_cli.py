"""`faceid-sdk serve` wiring, without opening a socket (uvicorn.run is replaced)."""

from __future__ import annotations

import logging

import pytest
import uvicorn
from click.testing import CliRunner
from server_helpers import DIM, MODEL_ID

from faceid_sdk import DecisionPolicy
from faceid_sdk._cli_server import serve
from faceid_sdk.server import ServerSettings


@pytest.fixture(autouse=True)
def restore_audit_logger():
    """serve attaches a stderr handler to the audit logger; leave no trace for other tests."""
    logger = logging.getLogger("faceid_sdk.audit")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_serve_builds_app_from_options(tmp_path, monkeypatch):
    """Options become ServerSettings, a new store gets the given model, the index is saved."""
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "web").mkdir()
    result = CliRunner().invoke(serve, [
        "--store", "s.db", "--model-id", MODEL_ID, "--dim", str(DIM), "--port", "9123",
        "--rate", "0", "--require-challenge", "--static", "web", "--request-timeout", "3"])
    assert result.exit_code == 0, result.output
    settings: ServerSettings = seen["app"].state.settings
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 9123)
    assert settings.rate_per_second is None and settings.require_challenge
    assert settings.auth == "auto" and not settings.expose_distances
    assert settings.request_timeout_seconds == 3
    assert seen["app"].state.enroller.model_id == MODEL_ID
    assert (tmp_path / "s.db.index").exists()


def test_serve_without_model_says_what_to_pass(tmp_path, monkeypatch):
    """A new store with no shipped model and no --model-id/--dim fails with a clear message."""
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr("faceid_sdk._defaults.resources.files",
                        lambda name: (_ for _ in ()).throw(ModuleNotFoundError(name)))
    result = CliRunner().invoke(serve, ["--store", str(tmp_path / "s.db")])
    assert result.exit_code == 69
    assert "--model-id" in result.output


def test_serve_rejects_missing_static_folder(tmp_path):
    """--static must name an existing folder."""
    result = CliRunner().invoke(serve, ["--store", str(tmp_path / "s.db"), "--static",
                                        str(tmp_path / "nope"), "--model-id", MODEL_ID,
                                        "--dim", str(DIM)])
    assert result.exit_code == 2 and "--static" in result.output


def test_serve_with_an_approximate_index(tmp_path, monkeypatch):
    """--index hnsw --ef-search 96 serves through an ApproxMatcher with that beam width."""
    from faceid_sdk import ApproxMatcher

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    result = CliRunner().invoke(serve, [
        "--store", str(tmp_path / "s.db"), "--model-id", MODEL_ID, "--dim", str(DIM),
        "--index", "hnsw", "--ef-search", "96", "--ef-construction", "120"])
    assert result.exit_code == 0, result.output
    matcher = seen["app"].state.enroller.matcher
    assert isinstance(matcher, ApproxMatcher) and matcher.ef_search == 96
    assert matcher.candidate_index.ef_construction == 120


def test_serve_refuses_knobs_of_another_index(tmp_path):
    result = CliRunner().invoke(serve, [
        "--store", str(tmp_path / "s.db"), "--model-id", MODEL_ID, "--dim", str(DIM),
        "--nprobe", "8"])
    assert result.exit_code == 2 and "--index ivf" in result.output


def test_worker_configuration_carries_every_setting(tmp_path, monkeypatch):
    """What `serve --workers` hands to each worker rebuilds the same settings and matcher."""
    import json

    from faceid_sdk import ApproxMatcher, Enroller
    from faceid_sdk.server._workers import (
        ENVIRONMENT_VARIABLE,
        app_from_environment,
        worker_environment,
    )

    store = tmp_path / "s.db"
    Enroller(store, MODEL_ID, DIM).close()
    (tmp_path / "web").mkdir()
    settings = ServerSettings(
        rate_per_second=None, trusted_proxies=("10.0.0.1",), auth="keys",
        static_dir=tmp_path / "web", expose_distances=True, max_enroll_features=3,
    )
    policy = DecisionPolicy(0.4, reject_ambiguous=False, runner_up=True)
    config = worker_environment(store, policy=policy, index="hnsw",
                                index_options={"ef_search": 48}, settings=settings)
    assert ServerSettings(**json.loads(config)["settings"]) == settings
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, config)
    app = app_from_environment()
    assert app.state.settings == settings
    matcher = app.state.enroller.matcher
    assert isinstance(matcher, ApproxMatcher) and matcher.ef_search == 48
    assert matcher.policy == app.state.enroller.policy == policy
    app.state.enroller.close()
