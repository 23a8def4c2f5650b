"""The README's main-job command works: scripts/demo walks the story to the same digest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_demo_walks_the_story() -> None:
    """scripts/demo ends with production holding the digest verified in pre-release."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "same digest: what ships is what was tested" in output
    assert "prerelease-cd[0]: matched: push of team/myapp:myapp-V1.0.0 matches" in output
    assert "Error: 'ann' may not decide this gate; allowed: group qa" in output
    assert "production's overlay = myapp-V1.0.0's digest" in output
