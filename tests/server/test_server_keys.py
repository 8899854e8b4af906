"""`faceid-sdk keys` and the exposure rule of `serve`."""

from __future__ import annotations

import json

import pytest
import uvicorn
from click.testing import CliRunner
from server_helpers import DIM, MODEL_ID

from faceid_sdk import Enroller
from faceid_sdk._cli_server import serve
from faceid_sdk.cli import main
from faceid_sdk.keys import parse_key


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "faces.db"
    Enroller(path, MODEL_ID, DIM).close()
    return path


def test_keys_create_list_revoke(store, tmp_path):
    runner = CliRunner()
    made = runner.invoke(main, ["keys", "create", "kiosk-1", "--scope", "device", "--store",
                                str(store), "--json"])
    assert made.exit_code == 0, made.output
    info = json.loads(made.stdout)
    assert info["scopes"] == ["identify", "verify"] and parse_key(info["key"])
    secret = parse_key(info["key"])[1]
    assert secret.encode() not in store.read_bytes()  # only its hash is stored
    out = tmp_path / "ops.key"
    made = runner.invoke(main, ["keys", "create", "ops", "--scope", "enroll,list", "--scope",
                                "remove", "--out", str(out), "--store", str(store)])
    assert made.exit_code == 0 and "fidk_" not in made.stdout
    assert oct(out.stat().st_mode & 0o777) == "0o600" and parse_key(out.read_text())
    again = runner.invoke(main, ["keys", "create", "ops", "--scope", "device", "--store",
                                 str(store)])
    assert again.exit_code == 64 and "exists" in again.output
    bad = runner.invoke(main, ["keys", "create", "x", "--scope", "everything", "--store",
                               str(store)])
    assert bad.exit_code == 64 and "unknown scope" in bad.output
    listed = json.loads(runner.invoke(main, ["keys", "list", "--json", "--store",
                                             str(store)]).stdout)
    assert [(k["name"], k["scopes"]) for k in listed] == [
        ("kiosk-1", ["identify", "verify"]), ("ops", ["enroll", "remove", "list"])]
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    assert runner.invoke(main, ["keys", "revoke", "kiosk-1", "--store", str(store)]).exit_code == 0
    with Enroller.open(store) as enroller:
        assert enroller.authenticate(info["key"]) is None
        assert enroller.authenticate(out.read_text()).name == "ops"
    missing = runner.invoke(main, ["keys", "revoke", "nobody", "--store", str(store)])
    assert missing.exit_code == 64


def test_serve_refuses_an_open_api_beyond_loopback(store, monkeypatch):
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw["host"]))
    runner = CliRunner()
    refused = runner.invoke(serve, ["--store", str(store), "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "no API keys" in refused.output and not started
    demo = runner.invoke(serve, ["--store", str(store), "--host", "0.0.0.0", "--demo"])
    assert demo.exit_code == 0 and started == ["0.0.0.0"] and "WARNING" in demo.output
    with Enroller.open(store) as enroller:
        enroller.create_api_key("kiosk", ["device"])
    keyed = runner.invoke(serve, ["--store", str(store), "--host", "0.0.0.0"])
    assert keyed.exit_code == 0 and started[-1] == "0.0.0.0"
    assert "API keys required" in keyed.output
    assert runner.invoke(serve, ["--store", str(store), "--admin-token", "x"]).exit_code == 2
