"""A real PostgreSQL server on loopback for the test session, and one fresh database per test.

The server is Debian's PostgreSQL 15 (``scripts/install`` installs it),
started with ``initdb``/``pg_ctl`` into a temporary directory on a free port
of 127.0.0.1, with trust authentication on loopback only. ``initdb`` refuses
to run as root, so as root the server runs as the ``postgres`` OS user.

A template database is migrated once per session; each test gets its own
``CREATE DATABASE ... TEMPLATE`` clone (procrastinate's ``setup_db`` /
``db_factory`` pattern), which takes milliseconds.

If the binaries are missing the fixture fails with "run scripts/install"; it
skips instead only when the CI variable is unset.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.store import schema

PG_BIN = Path(os.environ.get("CONVEYOR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "conveyor_template"
# Durability is pointless for throw-away test data; these make the server several times faster.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
START_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A running test server: where it listens and how to reach its databases."""

    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        """A ``postgresql://`` URL (the form users write) for one database."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def admin_engine(self) -> sa.Engine:
        """An autocommit engine on the ``postgres`` database, for CREATE/DROP DATABASE."""
        url = f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/postgres"
        return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _require_binaries() -> None:
    if (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists():
        return
    message = f"PostgreSQL binaries not found in {PG_BIN}: run scripts/install"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _run(command: list[str]) -> None:
    result = subprocess.run(
        _as_server_user(command), capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


def _wait_ready(server: PostgresServer, deadline: float) -> None:
    engine = server.admin_engine()
    try:
        while True:
            try:
                with engine.connect() as connection:
                    connection.exec_driver_sql("SELECT 1")
                return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        engine.dispose()


def _start(base: Path) -> tuple[PostgresServer, Path]:
    data = base / "data"
    _run(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]
    )
    last_error: Exception | None = None
    for _ in range(START_ATTEMPTS):  # the free port may be taken between probe and bind
        server = PostgresServer(host="127.0.0.1", port=_free_port(), user="postgres")
        options = " ".join(
            [f"-h {server.host}", f"-p {server.port}", f"-k {base}"]
            + [f"-c {setting}" for setting in FAST_SETTINGS]
        )
        try:
            _run(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(base / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ]
            )
            _wait_ready(server, time.monotonic() + 30)
            return server, data
        except (RuntimeError, sa.exc.OperationalError) as error:
            last_error = error
    raise RuntimeError(f"PostgreSQL did not start: {last_error}")


def _stop(data: Path) -> None:
    _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for the whole session, with a migrated template."""
    _require_binaries()
    base = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres", group="postgres")
    base.chmod(0o700)
    server, data = _start(base)
    try:
        admin = server.admin_engine()
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {TEMPLATE}")
        admin.dispose()
        schema.upgrade(server.url(TEMPLATE))
        yield server
    finally:
        _stop(data)
        shutil.rmtree(base, ignore_errors=True)


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, migrated database cloned from the template; dropped afterwards."""
    name = f"conveyor_test_{os.getpid()}_{next(_database_numbers)}"
    admin = postgres_server.admin_engine()
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield postgres_server.url(name)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def empty_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database with no tables at all (for migration tests)."""
    name = f"conveyor_empty_{os.getpid()}_{next(_database_numbers)}"
    admin = postgres_server.admin_engine()
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
