"""The registry deployer copies the run's digest into another registry and repository."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import push_image, running_registry

pytestmark = pytest.mark.slow


def test_copy_to_a_second_registry_keeps_the_digest(registry: str, tmp_path: Path) -> None:
    """Promotion into another registry lands exactly the same digest, checked with skopeo."""
    digest = push_image(registry, "team/myapp:v1", "v1", tmp_path)
    with running_registry(tmp_path / "mirror") as mirror:
        (tmp_path / "conveyor.yaml").write_text(
            textwrap.dedent(
                f"""\
                registries:
                  main: {{url: "http://{registry}", tls: {{insecure: true}}}}
                  mirror: {{url: "http://{mirror}", tls: {{insecure: true}}}}
                environments:
                  - name: production
                sources:
                  myapp: {{registry: main, repository: team/myapp}}
                pipelines:
                  promote:
                    environment: production
                    source: {{artifact: myapp}}
                    steps:
                      - type: deploy
                        deployer: registry
                        with: {{registry: mirror, repository: prod/myapp, tag: production}}
                      - type: deploy
                        deployer: registry
                        with: {{repository: team/myapp-released, tag: released}}
                """
            )
        )
        env = {
            **os.environ,
            "CONVEYOR_CONFIG": str(tmp_path / "conveyor.yaml"),
            "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            "CONVEYOR_DATA_DIR": str(tmp_path / "work"),
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "conveyor.cli",
                "run",
                "promote",
                "--tag",
                "v1",
                "--wait",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["status"] == "succeeded"
        for reference in (
            f"{mirror}/prod/myapp:production",
            f"{registry}/team/myapp-released:released",
        ):
            raw = subprocess.run(
                ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"],
                capture_output=True,
                check=True,
            ).stdout
            assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
