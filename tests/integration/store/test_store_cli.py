"""`conveyor db upgrade` and `conveyor db current` on both backends, and their errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.store import schema

HEAD = schema.head_revision()


def _conveyor(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


class TestDbUpgrade:
    def test_upgrade_migrates_an_empty_database_and_prints_the_revision(
        self, empty_database_url: str
    ):
        """The revision goes to stdout and the progress to stderr."""
        result = _conveyor("db", "upgrade", "--database-url", empty_database_url)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == f"database at revision {HEAD}\n"
        assert f"applied {HEAD}:" in result.stderr
        assert schema.current(empty_database_url) == HEAD

    def test_current_reports_none_then_the_head(self, empty_database_url: str):
        """`db current` says 'none' before the upgrade and the head, up to date, after it."""
        before = _conveyor("db", "current", env={"CONVEYOR_DATABASE_URL": empty_database_url})
        _conveyor("db", "upgrade", env={"CONVEYOR_DATABASE_URL": empty_database_url})
        after = _conveyor("db", "current", env={"CONVEYOR_DATABASE_URL": empty_database_url})
        assert before.stdout == f"none (behind {HEAD}: run `conveyor db upgrade`)\n"
        assert after.stdout == f"{HEAD} (up to date)\n"

    def test_without_a_url_the_default_sqlite_file_is_created_in_the_data_dir(self, tmp_path: Path):
        """With no URL set, the SQLite file is created under CONVEYOR_DATA_DIR."""
        env = {"CONVEYOR_DATABASE_URL": "", "CONVEYOR_DATA_DIR": str(tmp_path / "data")}
        result = _conveyor("db", "upgrade", env=env)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "data" / "state.db").is_file()

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            pytest.param(
                "postgres//admin:hunter2@db",
                "Error: CONVEYOR_DATABASE_URL / --database-url: 'postgres//admin:hunter2@db' "
                "is not a database URL; expected sqlite:///path/to/state.db or "
                "postgresql://user:password@host:5432/dbname\n",
                id="malformed",
            ),
            pytest.param(
                "mysql://admin:hunter2@db/conveyor",
                "Error: CONVEYOR_DATABASE_URL / --database-url: 'mysql://admin:***@db/conveyor' "
                "uses unsupported backend 'mysql'; expected sqlite:///path/to/state.db or "
                "postgresql://user:password@host:5432/dbname\n",
                id="unsupported",
            ),
        ],
    )
    def test_a_bad_url_is_one_error_line_with_exit_1(self, url: str, expected: str):
        """A bad URL prints one `Error:` line naming the setting and the valid forms, exit 1."""
        result = _conveyor("db", "upgrade", "--database-url", url)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", expected)

    def test_an_unreachable_server_is_reported_without_the_password(self):
        """A closed port gives exit 1 and a message with the password masked, no traceback."""
        result = _conveyor(
            "db", "upgrade", "--database-url", "postgresql://admin:hunter2@127.0.0.1:1/conveyor"
        )
        assert result.exit_code == 1
        assert "Error: cannot use the database at" in result.stderr
        assert "admin:***@127.0.0.1:1/conveyor" in result.stderr
        assert "hunter2" not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr


def test_the_installed_command_upgrades_a_database(tmp_path: Path):
    """The `conveyor` console script migrates a database in a real subprocess."""
    command = Path(sys.executable).with_name("conveyor")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    result = subprocess.run(
        [str(command), "db", "upgrade", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"database at revision {HEAD}\n")
    bad = subprocess.run(
        [str(command), "db", "upgrade", "--database-url", "postgresql://u:pw@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr and "pw@" not in bad.stderr
