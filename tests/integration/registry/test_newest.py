"""The `newest` policy against a real registry: creation times from the image configs."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.core.images import Repository
from conveyor.registry import inspection
from tests.support.registry import ImageLayout

# Tag -> the config's `created`. The newest image is neither the greatest tag
# string nor the last pushed; `build-09` has the latest time but sorts below the cap.
CREATED = {
    "build-10": "2024-05-01T10:00:00Z",
    "build-11": "2024-05-03T10:00:00.123456789Z",  # nanoseconds, as Go writes them
    "build-12": "2024-05-02T10:00:00+02:00",
    "build-09": "2030-01-01T00:00:00Z",
}


def _push_images(tmp_path: Path, registry, repository: str) -> ImageLayout:
    layout = ImageLayout(tmp_path / "layout")
    for tag, created in CREATED.items():
        layout.build(tag, layers=[{"tag.txt": tag.encode()}], created=created)
        layout.push(tag, f"{registry.host}/{repository}:{tag}")
    layout.build(
        "arm", layers=[{"a.txt": b"arm"}], architecture="arm64", created=CREATED["build-09"]
    )
    layout.write_index("multi", {"build-10": ("linux", "amd64"), "arm": ("linux", "arm64")})
    layout.push("multi", f"{registry.host}/{repository}:multi")
    return layout


async def test_created_times_from_configs(anonymous_registry, client_for, tmp_path, repo_name):
    """Each tag's config `created`, an index by its first image; one read per tag asked for."""
    _push_images(tmp_path, anonymous_registry, repo_name)
    client = client_for(anonymous_registry)
    repository = Repository(anonymous_registry.host, repo_name)
    found = await inspection.created_times(client, repository, ["build-11", "build-12", "multi"])
    assert {tag: when.isoformat() if when else None for tag, when in found.items()} == {
        "build-11": "2024-05-03T10:00:00.123456+00:00",
        "build-12": "2024-05-02T10:00:00+02:00",
        "multi": "2024-05-01T10:00:00+00:00",  # its first image is build-10's
    }


def _write_config(path: Path, registry, repository: str, *, policy: str) -> Path:
    path.write_text(
        f"""\
registries:
  main: {{url: "http://{registry.host}", tls: {{insecure: true}}}}
environments:
  - name: test
sources:
  app:
    registry: main
    repository: {repository}
    filter: {{glob: 'build-*'}}
    policy: {policy}
pipelines:
  deploy:
    environment: test
    source: {{artifact: app}}
    steps:
      - {{type: command, run: "true"}}
"""
    )
    return path


def test_select_source_newest_with_cap(anonymous_registry, tmp_path, repo_name):
    """`conveyor select --source` picks the newest of the inspected tags and explains the cap."""
    _push_images(tmp_path, anonymous_registry, repo_name)
    config = _write_config(
        tmp_path / "conveyor.yaml",
        anonymous_registry,
        repo_name,
        policy="{newest: {max_candidates: 3}}",
    )
    runner = CliRunner()
    plain = runner.invoke(cli, ["select", "--config", str(config), "--source", "app"])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.split()[0] == "build-11"
    explained = runner.invoke(
        cli, ["select", "--config", str(config), "--source", "app", "--explain", "--json"]
    )
    assert explained.exit_code == 0, explained.output
    data = json.loads(explained.stdout)
    assert data["selected"] == "build-11"
    assert data["reason"].startswith("newest creation time (inspected 3 tags, max_candidates 3)")
    reasons = {row["tag"]: row["reason"] for row in data["tags"]}
    assert reasons["build-09"].startswith("not inspected: only the 3 greatest tags")
    assert reasons["multi"] == "does not match glob 'build-*'"


def test_zone_less_created_is_utc(anonymous_registry, tmp_path, repo_name):
    """A config `created` without a zone counts as UTC next to zoned ones (no TypeError).

    `build-plain` (10:30, no zone: 10:30 UTC) is newer than `build-zoned`
    (12:00+02:00, 10:00 UTC) and older than `build-z` (11:00Z).
    """
    layout = ImageLayout(tmp_path / "layout")
    created = {
        "build-zoned": "2024-05-01T12:00:00+02:00",
        "build-plain": "2024-05-01T10:30:00",
        "build-z": "2024-05-01T11:00:00Z",
    }
    for tag, when in created.items():
        layout.build(tag, layers=[{"tag.txt": tag.encode()}])
        layout.set_created_text(tag, when)
    runner = CliRunner()
    config = _write_config(
        tmp_path / "conveyor.yaml", anonymous_registry, repo_name, policy="{newest: {}}"
    )
    for tags, newest in ((["build-zoned", "build-plain"], "build-plain"), (["build-z"], "build-z")):
        for tag in tags:
            layout.push(tag, f"{anonymous_registry.host}/{repo_name}:{tag}")
        result = runner.invoke(cli, ["select", "--config", str(config), "--source", "app"])
        assert result.exit_code == 0, result.output
        assert result.stdout.split()[0] == newest
