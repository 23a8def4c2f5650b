"""Opening the state database: URL parsing, SQLite pragmas, and the unit of work.

Two backends, one schema:

- ``sqlite:///path/state.db``: one file, nothing to start. Every connection
  runs in WAL mode with foreign keys on and a busy timeout. Transactions start
  with ``BEGIN IMMEDIATE`` (the write lock is taken up front), because a
  deferred transaction that reads and then writes fails at once with
  "database is locked" when another writer committed in between; read-only
  units of work use a plain ``BEGIN`` so that readers never wait.
- ``postgresql://user:password@host:port/db`` (or ``postgresql+psycopg://``):
  several processes on several machines, through psycopg 3.

Errors name CONVEYOR_DATABASE_URL / --database-url and the valid forms, and
show the URL with its password masked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from conveyor.core.errors import DatabaseUnavailable, InvalidDatabaseUrl

EXPECTED_FORMS = "sqlite:///path/to/state.db or postgresql://user:password@host:5432/dbname"
WHERE = "CONVEYOR_DATABASE_URL / --database-url"
# Long enough to ride out another process's write transaction, short enough
# that a stuck writer is reported rather than hanging a CLI command.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# psycopg's connect_timeout (seconds): an unreachable server is reported quickly.
POSTGRES_CONNECT_TIMEOUT_S = 10


def masked(url: str | sa.URL) -> str:
    """The URL as text with its password replaced by ***."""
    try:
        parsed = sa.make_url(url) if isinstance(url, str) else url
    except exc.ArgumentError:
        return _mask_unparsable(str(url))
    return parsed.render_as_string(hide_password=True)


def _mask_unparsable(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return text
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def parse_url(url: str) -> sa.URL:
    """Parse and normalise a database URL; raises InvalidDatabaseUrl naming the valid forms."""
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError:
        raise InvalidDatabaseUrl(
            f"{WHERE}: '{masked(url)}' is not a database URL; expected {EXPECTED_FORMS}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise InvalidDatabaseUrl(
                f"{WHERE}: driver '{driver}' in '{masked(parsed)}' is not supported; "
                f"use postgresql:// or postgresql+psycopg:// (psycopg 3)"
            )
        if not parsed.database:
            raise InvalidDatabaseUrl(
                f"{WHERE}: '{masked(parsed)}' names no database; expected {EXPECTED_FORMS}"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise InvalidDatabaseUrl(
                f"{WHERE}: driver '{driver}' in '{url}' is not supported; use sqlite:///path"
            )
        if not parsed.database:
            raise InvalidDatabaseUrl(
                f"{WHERE}: '{url}' names no file; expected sqlite:///path/to/state.db"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise InvalidDatabaseUrl(
        f"{WHERE}: '{masked(parsed)}' uses unsupported backend '{backend}'; "
        f"expected {EXPECTED_FORMS}"
    )


def create_engine(url: str, *, echo: bool = False) -> sa.Engine:
    """An Engine for the URL; SQLite gets its parent directory created and its pragmas set.

    Raises InvalidDatabaseUrl for a URL of the wrong shape. Connection problems
    surface later, as DatabaseUnavailable, from ``connect`` and ``unit_of_work``.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(parsed, echo=echo)
    return sa.create_engine(
        parsed,
        echo=echo,
        pool_pre_ping=True,
        connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
    )


def _create_sqlite_engine(url: sa.URL, *, echo: bool) -> sa.Engine:
    database = url.database or ""
    if database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatabaseUnavailable(
                f"{WHERE}: cannot create the directory of '{database}': {error.strerror}"
            ) from None
    engine = sa.create_engine(url, echo=echo)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401
    # Take transaction control away from the sqlite3 module (it would defer BEGIN
    # and break SAVEPOINT); our "begin" listener issues BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Safe with WAL: a power loss may drop the last commits, never corrupt the file.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: sa.Connection) -> None:
    mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


def check_connection(engine: sa.Engine) -> None:
    """Open one connection; raises DatabaseUnavailable (password masked) when that fails."""
    with translate_errors(engine), engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")


@contextmanager
def translate_errors(engine: sa.Engine) -> Iterator[None]:
    """Turn driver connection failures into DatabaseUnavailable, without the password."""
    try:
        yield
    except exc.OperationalError as error:
        if not _is_connection_problem(error):
            raise
        raise DatabaseUnavailable(
            f"cannot use the database at {masked(engine.url)} ({WHERE}): {_first_line(error.orig)}"
        ) from None


def _is_connection_problem(error: exc.OperationalError) -> bool:
    if error.connection_invalidated:
        return True
    text = str(error.orig).lower()
    markers = (
        "connect",
        "unable to open",
        "authentication",
        "does not exist",
        "refused",
        "locked",
    )
    return any(marker in text for marker in markers)


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else "unknown error"
    return text.splitlines()[0] if text else type(error).__name__


def sessions(engine: sa.Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(engine: sa.Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One transaction: commits when the block ends, rolls back if it raises.

    ``read_only`` lets SQLite readers run concurrently with a writer; on
    PostgreSQL it has no effect. Connection failures raise DatabaseUnavailable.
    """
    bind = engine.execution_options(sqlite_begin="") if read_only else engine
    with translate_errors(engine), Session(bind, expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextmanager
def core_transaction(
    engine: sa.Engine, connection: sa.Connection | None = None
) -> Iterator[sa.Connection]:
    """One write transaction on a plain Connection (SQLAlchemy Core, no ORM session).

    The same transaction as ``unit_of_work`` (``BEGIN IMMEDIATE`` on SQLite,
    commit when the block ends, rollback if it raises, DatabaseUnavailable for
    connection failures) for hot paths that need no ORM objects. On a given
    ``connection`` (one the caller holds, e.g. a dedicated writer thread's),
    or else on one from the engine's pool.
    """
    with translate_errors(engine):
        if connection is None:
            with engine.begin() as pooled:
                yield pooled
        else:
            with connection.begin():
                yield connection


def is_postgresql(session_or_engine: Session | sa.Engine | sa.Connection) -> bool:
    """Whether the bind is PostgreSQL (else SQLite)."""
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, Session)
        else session_or_engine
    )
    return bind.dialect.name == "postgresql"


def insert_ignoring_conflicts(
    session: Session,
    table: type[Any],
    values: dict[str, Any],
    *,
    conflict_columns: tuple[str, ...],
) -> bool:
    """INSERT ... ON CONFLICT (columns) DO NOTHING; True when the row was inserted.

    Both backends support this form; no savepoint or exception is involved, so
    the surrounding transaction stays usable after a conflict.
    """
    statement = skipping_conflicts(
        sa.inspect(table).local_table, conflict_columns, postgresql=is_postgresql(session)
    )
    # RETURNING rather than rowcount: drivers differ on rowcount for ON CONFLICT.
    key = sa.inspect(table).primary_key[0]
    return session.execute(statement.values(**values).returning(key)).first() is not None


def skipping_conflicts(
    table: sa.Table, conflict_columns: Sequence[str], *, postgresql: bool
) -> sa.Insert:
    """``INSERT ... ON CONFLICT (columns) DO NOTHING`` in the backend's dialect (both have it)."""
    insert = postgresql_insert(table) if postgresql else sqlite_insert(table)
    return insert.on_conflict_do_nothing(index_elements=list(conflict_columns))
