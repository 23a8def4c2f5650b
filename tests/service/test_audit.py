"""Reading the audit log: the use case and `conveyor audit list` through click."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.core.errors import InvalidInput
from conveyor.service import audit, environments, tokens
from conveyor.service.context import Services
from tests.service.conftest import STORY

DIGEST = "sha256:" + "ab" * 32


def test_entries_are_newest_first_with_their_identity(services: Services) -> None:
    """Each write shows up with who made it, newest first, at most `limit` entries."""
    tokens.create(services, name="ci", role="viewer", created_by="alice")
    environments.mark_bad(services, DIGEST, reason="CVE-2026-1", user="bob")
    entries = audit.list_entries(services, limit=10)
    assert [(e["identity"], e["action"], e["target"]) for e in entries] == [
        ("bob", "digest.mark_bad", DIGEST),
        ("alice", "token.create", "ci"),
    ]
    assert entries[1]["details"] == {"role": "viewer"}
    assert [e["action"] for e in audit.list_entries(services, limit=1)] == ["digest.mark_bad"]


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_limit_out_of_bounds_is_refused_naming_the_field(services: Services, limit: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        audit.list_entries(services, limit=limit)
    assert refused.value.problems[0].location.field == "limit"


def test_audit_list_command(tmp_path: Path) -> None:
    """`conveyor audit list` prints a table; --json the stable shape; --limit bounds it."""
    (tmp_path / "conveyor.yaml").write_text(STORY)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {"CONVEYOR_USER": "carol", "CONVEYOR_DATABASE_URL": url}
    runner = CliRunner()
    config = ["--config", str(tmp_path / "conveyor.yaml")]
    created = runner.invoke(
        cli, ["token", "create", "--name", "ci", "--role", "viewer", *config], env=env
    )
    assert created.exit_code == 0, created.output
    runner.invoke(cli, ["token", "create", "--name", "bot", "--role", "admin", *config], env=env)

    table = runner.invoke(cli, ["audit", "list", *config], env=env)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "AT", "IDENTITY", "ACTION", "TARGET", "DETAILS"]
    assert "carol" in lines[1] and "token.create" in lines[1] and "bot" in lines[1]

    as_json = runner.invoke(cli, ["audit", "list", "--json", "--limit", "1", *config], env=env)
    assert as_json.exit_code == 0, as_json.output
    [entry] = json.loads(as_json.stdout)
    assert (entry["identity"], entry["action"], entry["target"]) == ("carol", "token.create", "bot")
    assert entry["details"] == {"role": "admin"}

    refused = runner.invoke(cli, ["audit", "list", "--limit", "0", *config], env=env)
    assert refused.exit_code == 1
    assert "limit" in refused.stderr
