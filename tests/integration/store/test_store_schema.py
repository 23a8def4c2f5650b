"""Migrations, engine configuration and time handling, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from tests.support.times import NOW

from conveyor.core.errors import DatabaseUnavailable, InvalidDatabaseUrl
from conveyor.store import database, schema, tables
from conveyor.store.tables import AuditEntry

EXPECTED_TABLES = {
    "alembic_version",
    "pipeline_definitions",
    "runs",
    "steps",
    "step_logs",
    "events",
    "deployments",
    "verification_records",
    "approvals",
    "bad_digests",
    "api_tokens",
    "audit_log",
    "leases",
    "source_polls",
}


class TestMigrations:
    def test_upgrade_creates_every_table_in_an_empty_database(self, empty_database_url: str):
        """Upgrading an empty database reaches the head revision with every table."""
        assert schema.upgrade(empty_database_url) == schema.head_revision()
        engine = database.create_engine(empty_database_url)
        try:
            assert set(sa.inspect(engine).get_table_names()) == EXPECTED_TABLES
        finally:
            engine.dispose()

    def test_migrated_schema_matches_the_table_definitions(self, empty_database_url: str):
        """The migrated schema has no difference from the one tables.py declares."""
        schema.upgrade(empty_database_url)
        engine = database.create_engine(empty_database_url)
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, tables.metadata) == []
        finally:
            engine.dispose()

    def test_migrated_schema_matches_a_fresh_create_all(
        self, empty_database_url: str, tmp_path, backend: str, request
    ):
        """Columns, indexes and unique constraints after migrating equal those of create_all."""
        schema.upgrade(empty_database_url)
        if backend == "sqlite":
            fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
        else:
            fresh_url = _new_database(request.getfixturevalue("postgres_server"), "fresh")
        fresh = database.create_engine(fresh_url)
        migrated = database.create_engine(empty_database_url)
        try:
            tables.metadata.create_all(fresh)
            assert _describe(migrated) == _describe(fresh)
        finally:
            fresh.dispose()
            migrated.dispose()

    def test_upgrade_twice_changes_nothing(self, database_url: str):
        """Upgrading an up-to-date database is a no-op that reports the same revision."""
        assert schema.current(database_url) == schema.head_revision()
        assert schema.upgrade(database_url) == schema.head_revision()

    def test_json_null_written_before_0003_becomes_sql_null(self, empty_database_url: str):
        """Rows stored with the JSON text 'null' read as SQL NULL after the upgrade; data stays."""
        schema.upgrade(empty_database_url, revision="0002")
        engine = database.create_engine(empty_database_url)
        document = "CAST({} AS JSONB)" if engine.dialect.name == "postgresql" else "{}"
        insert = sa.text(
            "INSERT INTO events (endpoint, sender, delivery_id, dedupe_key, kind, registry_host, "
            "repository, scan_summary, outcome, received_at, status, redeliveries, attempts) "
            "VALUES ('e', 'distribution', :id, 'k', 'push', 'r', 'team/app', "
            f"{document.format(':summary')}, {document.format(':outcome')}, :at, 'pending', 0, 0)"
        )
        try:
            with engine.begin() as connection:
                for delivery_id, summary in (("old", "null"), ("scan", '{"critical": 1}')):
                    connection.execute(
                        insert,
                        {"id": delivery_id, "summary": summary, "outcome": "null", "at": NOW},
                    )
            assert schema.upgrade(empty_database_url) == schema.head_revision()
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.text(
                        "SELECT delivery_id, scan_summary IS NULL, outcome IS NULL "
                        "FROM events ORDER BY delivery_id"
                    )
                ).all()
        finally:
            engine.dispose()
        assert [tuple(row) for row in rows] == [("old", True, True), ("scan", False, True)]

    def test_current_of_an_empty_database_is_none(self, empty_database_url: str):
        """A database that was never migrated has no revision."""
        assert schema.current(empty_database_url) is None


def _new_database(server, suffix: str) -> str:
    name = f"conveyor_{suffix}_{uuid.uuid4().hex[:12]}"
    admin = server.admin_engine()
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return server.url(name)


def _describe(engine: sa.Engine) -> dict[str, object]:
    inspector = sa.inspect(engine)
    described: dict[str, object] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        described[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(table)
            ),
        }
    return described


class TestSqliteConnection:
    def test_connections_use_wal_foreign_keys_and_a_busy_timeout(self, tmp_path):
        """Every SQLite connection runs in WAL mode with foreign keys on and a busy timeout."""
        engine = database.create_engine(f"sqlite:///{tmp_path / 'a' / 'state.db'}")
        try:
            with engine.connect() as connection:
                pragma = connection.exec_driver_sql
                assert pragma("PRAGMA journal_mode").scalar() == "wal"
                assert pragma("PRAGMA foreign_keys").scalar() == 1
                assert pragma("PRAGMA busy_timeout").scalar() == database.SQLITE_BUSY_TIMEOUT_MS
            assert (tmp_path / "a").is_dir()
        finally:
            engine.dispose()

    def test_foreign_keys_are_enforced(self, tmp_path):
        """A step pointing at a run that does not exist is refused on SQLite too."""
        url = f"sqlite:///{tmp_path / 'state.db'}"
        schema.upgrade(url)
        engine = database.create_engine(url)
        try:
            with pytest.raises(sa.exc.IntegrityError), database.unit_of_work(engine) as session:
                session.add(
                    tables.Step(
                        run_id=999,
                        index=0,
                        name="x",
                        kind="command",
                        status="pending",
                        attempt=0,
                        output={},
                    )
                )
        finally:
            engine.dispose()


class TestTimestamps:
    def test_datetimes_come_back_timezone_aware_utc(self, engine: sa.Engine):
        """A datetime stored in another zone is read back as the same instant in UTC."""
        tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
        with database.unit_of_work(engine) as session:
            session.add(AuditEntry(identity="a", action="b", target="c", details={}, at=tokyo))
        with database.unit_of_work(engine, read_only=True) as session:
            stored = session.scalars(sa.select(AuditEntry)).one().at
        assert stored == NOW
        assert stored.utcoffset() == timedelta(0)

    def test_naive_datetimes_are_refused(self, engine: sa.Engine):
        """A naive datetime is a bug and is refused before it reaches the database."""
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            with database.unit_of_work(engine) as session:
                session.add(
                    AuditEntry(
                        identity="a", action="b", target="c", details={}, at=datetime(2026, 1, 1)
                    )
                )
                session.flush()


class TestDatabaseUrls:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            pytest.param("nonsense", "'nonsense' is not a database URL", id="not-a-url"),
            pytest.param("mysql://u:pw@h/db", "unsupported backend 'mysql'", id="mysql"),
            pytest.param("postgresql://u:pw@h", "names no database", id="no-database"),
            pytest.param("postgresql+asyncpg://u:pw@h/d", "driver 'asyncpg'", id="driver"),
            pytest.param("sqlite://", "names no file", id="sqlite-no-file"),
        ],
    )
    def test_malformed_urls_name_the_setting_and_the_valid_forms(self, url: str, expected: str):
        """A malformed URL is refused naming the setting, the problem and the valid forms."""
        with pytest.raises(InvalidDatabaseUrl) as caught:
            database.create_engine(url)
        message = str(caught.value)
        assert message.startswith("CONVEYOR_DATABASE_URL / --database-url: ")
        assert expected in message
        assert "pw" not in message

    def test_postgresql_urls_use_psycopg_3(self):
        """A plain postgresql:// URL is served by the psycopg 3 driver."""
        parsed = database.parse_url("postgresql://u@localhost/db")
        assert parsed.drivername == "postgresql+psycopg"

    def test_unreachable_server_is_reported_with_the_password_masked(self):
        """Connecting to a closed port raises DatabaseUnavailable without the password."""
        engine = database.create_engine("postgresql://bob:hunter2@127.0.0.1:1/conveyor")
        with pytest.raises(DatabaseUnavailable) as caught:
            database.check_connection(engine)
        assert "bob:***@127.0.0.1:1/conveyor" in str(caught.value)
        assert "hunter2" not in str(caught.value)
        assert "CONVEYOR_DATABASE_URL" in str(caught.value)

    def test_store_errors_do_not_leak_driver_exception_types(self):
        """Callers catch Conveyor errors only: ours are not SQLAlchemy or psycopg exceptions."""
        import psycopg

        for error in (InvalidDatabaseUrl, DatabaseUnavailable):
            assert not issubclass(error, (sa.exc.SQLAlchemyError, psycopg.Error))
