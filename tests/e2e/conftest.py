"""End-to-end fixtures: a real CNCF distribution registry on loopback and images pushed to it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        message = f"{', '.join(missing)} not installed: run scripts/install"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def running_registry(directory: Path) -> Iterator[str]:
    """A real CNCF distribution registry on 127.0.0.1 storing under ``directory``."""
    _require("docker-registry", "skopeo", "buildah")
    directory.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{_free_port()}"
    config = directory / "registry.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            version: 0.1
            log: {{level: error}}
            storage:
              filesystem: {{rootdirectory: {directory / "registry-data"}}}
            http:
              addr: {address}
            """
        )
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", int(address.split(":")[1]))) == 0:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("registry did not start")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real CNCF distribution registry on 127.0.0.1, stopped after the test."""
    with running_registry(tmp_path) as address:
        yield address


def push_image(registry: str, reference: str, content: str, workdir: Path) -> str:
    """Build a one-file image with buildah and push it; returns the pushed digest."""
    context = workdir / f"image-{abs(hash((reference, content)))}"
    context.mkdir(parents=True, exist_ok=True)
    (context / "content.txt").write_text(content)
    (context / "Containerfile").write_text("FROM scratch\nCOPY content.txt /content.txt\n")
    target = f"{registry}/{reference}"
    digest_file = context / "digest"
    storage = ["buildah", "--storage-driver", "vfs"]
    subprocess.run(
        [*storage, "bud", "--isolation", "chroot", "-q", "-t", target, str(context)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *storage,
            "push",
            "--tls-verify=false",
            "--digestfile",
            str(digest_file),
            target,
            f"docker://{target}",
        ],
        check=True,
        capture_output=True,
    )
    return digest_file.read_text().strip()
