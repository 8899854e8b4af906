"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, a free port.

Started once per test session as an unprivileged user (``nobody`` when the tests run as
root, as CI does), on 127.0.0.1 with trust authentication inside its own folder, and stopped
at the end. Each test gets a fresh database. ``make test`` installs the binaries
(``postgres-setup``) and sets ``FACEID_REQUIRE_POSTGRES=1``, so there a missing server fails
instead of skipping.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user() -> tuple[dict[str, object], str]:
    """Popen keywords running a command as an unprivileged user, and that user's name."""
    if os.geteuid() != 0:
        return {}, pwd.getpwuid(os.geteuid()).pw_name
    nobody = pwd.getpwnam("nobody")

    def demote() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return {"preexec_fn": demote}, "nobody"


class PostgresServer:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise FileNotFoundError("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        self.folder = Path(tempfile.mkdtemp(prefix="faceid-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.bindir = bindir
        self.user_kwargs, self.user = _as_user()
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
        env = {**os.environ, "LC_ALL": "C", "HOME": str(self.folder)}
        self.env = env
        subprocess.run([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                        "faceid", "--no-sync", "-E", "UTF8"], check=True, env=env,
                       cwd=self.folder, capture_output=True, **self.user_kwargs)  # type: ignore[arg-type]
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=on -c max_connections=200")
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                        "-l", str(self.folder / "server.log"), "start"], check=True, env=env,
                       cwd=self.folder, capture_output=True, **self.user_kwargs)  # type: ignore[arg-type]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://faceid@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                        "stop"], env=self.env, cwd=self.folder, capture_output=True,
                       **self.user_kwargs)  # type: ignore[arg-type]
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg", reason="needs faceid-sdk[postgres]")
    try:
        server = PostgresServer()
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        message = f"cannot start PostgreSQL: {exc} {detail.decode(errors='replace')[-500:]}"
        if os.environ.get("FACEID_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message + " (run `make postgres-setup`)")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.new_database()
