"""SPEC.md's story through the real CLI, a real registry on loopback, buildah and skopeo."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

Cli = Callable[..., Any]


def _config(registry: str, context: Path) -> str:
    return textwrap.dedent(
        f"""\
        registries:
          main: {{url: "http://{registry}", tls: {{insecure: true}}}}
        environments:
          - name: test
          - name: pre-release
          - name: production
            requires: pre-release
        sources:
          myapp:
            registry: main
            repository: team/myapp
            filter: {{pattern: '^myapp-V(?P<version>.+)$', extract: '$version'}}
            policy: {{semver: {{}}}}
        pipelines:
          prerelease-ci:
            parameters: {{R_VERSION: {{required: true}}}}
            steps:
              - {{name: build, type: build, context: "{context}", registry: main,
                  repository: team/myapp, tag: "myapp-V${{R_VERSION}}"}}
          prerelease-cd:
            environment: pre-release
            source: {{artifact: myapp}}
            steps:
              - {{name: deploy, type: deploy, deployer: registry-tag, with: {{tag: pre-release}}}}
              - {{name: verification passed, type: approval, approvers: {{users: [quinn]}}}}
          production:
            environment: production
            source: {{pipeline: prerelease-cd}}
            steps:
              - {{name: release approval, type: approval, approvers: {{users: [rita]}}}}
              - {{name: kubernetes image upgrade, type: deploy, deployer: registry-tag,
                  with: {{tag: production}}}}
        """
    )


@pytest.fixture
def cli(tmp_path: Path, registry: str) -> Cli:
    context = tmp_path / "app"
    context.mkdir()
    (context / "Containerfile").write_text("FROM scratch\nCOPY version.txt /version.txt\n")
    (tmp_path / "conveyor.yaml").write_text(_config(registry, context))
    env = {
        **os.environ,
        "CONVEYOR_CONFIG": str(tmp_path / "conveyor.yaml"),
        "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
    }

    def run(*args: str, user: str = "ann", ok: bool = True) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "conveyor.cli", *args],
            env={**env, "CONVEYOR_USER": user, "CONVEYOR_GROUPS": ""},
            text=True,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if ok:
            assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        if "--json" in args and done.returncode == 0:
            return json.loads(done.stdout)
        return done

    run.context = context  # type: ignore[attr-defined]
    return run


def _skopeo_digest(registry: str, tag: str) -> str:
    raw = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{registry}/team/myapp:{tag}",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _build(cli: Cli, version: str) -> str:
    (cli.context / "version.txt").write_text(version)  # type: ignore[attr-defined]
    run = cli("run", "prerelease-ci", "--param", f"R_VERSION={version}", "--wait", "--json")
    assert run["status"] == "succeeded", run
    return str(run["digest"])


def _prerelease(cli: Cli, tag: str, *, approve: bool) -> dict[str, Any]:
    run = cli("run", "prerelease-cd", "--tag", tag, "--json")
    cli("worker", "--until-idle")
    if approve:
        cli("approve", str(run["id"]), "--comment", "verification passed", user="quinn")
    else:
        cli("reject", str(run["id"]), "--comment", "login broken", user="quinn")
    cli("worker", "--until-idle")
    return cli("runs", "show", str(run["id"]), "--json")  # type: ignore[no-any-return]


def test_what_ships_to_production_is_what_passed_prerelease(cli: Cli, registry: str) -> None:
    """Production receives, by digest, exactly the image verified in pre-release, and never a failed one."""
    v1 = _build(cli, "1.0.0")
    assert _skopeo_digest(registry, "myapp-V1.0.0") == v1

    first = _prerelease(cli, "myapp-V1.0.0", approve=True)
    assert first["status"] == "succeeded"
    assert _skopeo_digest(registry, "pre-release") == v1

    production = cli("run", "production", "--json")
    assert production["upstream_run"] == first["id"]
    cli("worker", "--until-idle")
    refused = cli("approve", str(production["id"]), user="ann", ok=False)
    assert refused.returncode == 1
    assert "'ann' started this run" in refused.stderr
    cli("approve", str(production["id"]), "--comment", "ship it", user="rita")
    cli("worker", "--until-idle")
    done = cli("runs", "show", str(production["id"]), "--json")
    assert done["status"] == "succeeded", done
    assert _skopeo_digest(registry, "production") == v1
    assert cli("env", "show", "production", "--json")["digest"] == v1

    v2 = _build(cli, "1.1.0")
    assert v2 != v1
    failed = _prerelease(cli, "myapp-V1.1.0", approve=False)
    assert failed["status"] == "failed"
    assert _skopeo_digest(registry, "pre-release") == v2  # deployed, then rejected

    again = cli("run", "production", "--json")
    assert again["upstream_run"] == first["id"]
    assert again["digest"] == v1
    refused_pick = cli("run", "production", "--from-run", str(failed["id"]), ok=False)
    assert refused_pick.returncode == 1
    assert f"run {failed['id']} of 'prerelease-cd' is failed" in refused_pick.stderr
    assert _skopeo_digest(registry, "production") == v1


def test_select_source_against_the_live_registry(cli: Cli, registry: str, tmp_path: Path) -> None:
    """`conveyor select --source` picks from the registry's tags and prints the winner's digest."""
    from tests.e2e.conftest import push_image

    push_image(registry, "team/myapp:myapp-V1.0.0", "1.0.0", tmp_path)
    newest = push_image(registry, "team/myapp:myapp-V1.2.0", "1.2.0", tmp_path)
    push_image(registry, "team/myapp:other-9.9.9", "other", tmp_path)
    push_image(registry, "team/myapp:myapp-V1.3.0-rc1", "rc", tmp_path)
    done = cli("select", "--source", "myapp")
    assert done.stdout.split() == ["myapp-V1.2.0", newest]
    explained = cli("select", "--source", "myapp", "--explain", "--json")
    assert explained["selected"] == "myapp-V1.2.0" and explained["digest"] == newest
    assert {t["tag"]: t["kept"] for t in explained["tags"]}["other-9.9.9"] is False
