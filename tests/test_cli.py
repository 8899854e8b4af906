"""The faceid-sdk command line: a thin layer with meaningful exit codes."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from faceid_sdk import FeatureCodec
from faceid_sdk._enroll import index_path_for
from faceid_sdk.cli import main

from .conftest import DIM, MODEL_ID, unit_rows


def all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands(main)))
def test_every_command_has_help(path):
    """--help works for every command and describes it."""
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize("name", sorted(main.commands))
def test_commands_accept_h_when_invoked_on_their_own(name):
    """-h works on each command object alone, so its help reads the same however it is reached.

    Click caches a command's help option on first use; a command that relied on the group's
    settings rendered "--help" alone after a test had invoked it directly (docs/cli.md went stale).
    """
    command = main.commands[name]
    alone = CliRunner().invoke(command, ["-h"], terminal_width=100)
    assert alone.exit_code == 0, alone.output
    assert "-h, --help" in alone.output
    via_group = CliRunner().invoke(main, [name, "-h"], terminal_width=100)
    assert alone.output.split("\n", 1)[1] == via_group.output.split("\n", 1)[1]


@pytest.fixture
def setup(tmp_path, rng):
    store = tmp_path / "faces.db"
    vectors = unit_rows(rng, 4)
    for i, v in enumerate(vectors):
        np.save(tmp_path / f"v{i}.npy", v)
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(main, [*map(str, args), "--store", str(store)])
        assert result.exit_code == code, result.output
        return result

    return run, tmp_path, vectors, store


def test_enroll_identify_verify_remove(setup):
    """The whole life cycle works from the command line, with exit codes 0, 1 and 66."""
    run, tmp, _vectors, _store = setup
    run("enroll", "alice", "--vectors", tmp / "v0.npy", "--model-id", MODEL_ID)
    run("enroll", "bob", "--vectors", tmp / "v1.npy")
    out = json.loads(run("identify", "--vectors", tmp / "v0.npy", "--json").output)
    assert out[0]["identity"] == "alice" and out[0]["accepted"]
    stranger = json.loads(run("identify", "--vectors", tmp / "v2.npy", "--json", code=1).output)
    assert stranger[0]["identity"] is None and not stranger[0]["accepted"]
    run("verify", "alice", "--vectors", tmp / "v0.npy")
    run("verify", "bob", "--vectors", tmp / "v0.npy", code=1)
    listed = json.loads(run("list", "--json").output)
    assert [r["identity"] for r in listed] == ["alice", "bob"]
    run("remove", "alice")
    run("remove", "alice", code=66)
    run("verify", "alice", "--vectors", tmp / "v0.npy", code=66)


def test_identify_by_payload_and_top_k(setup):
    """A base64url payload is accepted and --top lists candidates."""
    run, tmp, vectors, _store = setup
    run("enroll", "alice", "--vectors", tmp / "v0.npy", "--model-id", MODEL_ID)
    payload = FeatureCodec(MODEL_ID, DIM).encode_text(vectors[0])
    out = json.loads(run("identify", "--payload", payload, "--top", "3", "--json").output)
    assert out[0]["candidates"][0]["identity"] == "alice"


def test_bad_inputs_give_clear_errors(setup):
    """Bad payloads, missing stores and missing sources fail with a message, not a traceback."""
    run, tmp, _vectors, _store = setup
    result = run("identify", "--vectors", tmp / "v0.npy", code=74)
    assert "no store" in result.output
    run("enroll", "alice", "--vectors", tmp / "v0.npy", "--model-id", MODEL_ID)
    result = run("identify", "--payload", "not*base64", code=65)
    assert "Error" in result.output and "Traceback" not in result.output
    np.save(tmp / "zero.npy", np.zeros(DIM, dtype=np.float32))
    result = run("enroll", "mallory", "--vectors", tmp / "zero.npy", code=65)
    assert "norm" in result.output
    run("identify", code=2)


def test_rebuild_index_and_info(setup):
    """rebuild-index reports what it checked; info describes the store."""
    run, tmp, _vectors, store = setup
    run("enroll", "alice", "--vectors", tmp / "v0.npy", "--model-id", MODEL_ID)
    index_path_for(store).unlink()
    report = json.loads(run("rebuild-index", "--json").output)
    assert report["previous"] == "missing" and report["templates"] == 1
    info = json.loads(run("info", "--json").output)
    assert info["model_id"] == MODEL_ID and info["identities"] == 1
    assert info["index_status"] == "ok"


def test_tensorflow_commands_print_no_startup_noise():
    """A command that loads TensorFlow prints its answer, not TensorFlow's start-up lines."""
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    # A size outside stats.json, so that the command builds the model with TensorFlow.
    out = subprocess.run([sys.executable, "-m", "faceid_sdk", "model-info", "--input-size", "112"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "parameters" in out.stdout
    assert "oneDNN" not in out.stderr and "absl" not in out.stderr, out.stderr
