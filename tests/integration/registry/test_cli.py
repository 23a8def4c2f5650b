"""`conveyor image ...` end to end through click against real registries."""

from __future__ import annotations

import base64
import json

from click.testing import CliRunner

from conveyor.cli.main import cli
from tests.support.registry import skopeo_digest

from .conftest import BASIC_PASSWORD, BASIC_USER


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def insecure(*registries) -> dict[str, str]:
    return {"CONVEYOR_INSECURE_REGISTRIES": " ".join(r.host for r in registries)}


class TestImageCommands:
    def test_resolve_prints_the_digest(self, anonymous_registry, images):
        """`image resolve` prints only the digest on stdout."""
        result = invoke(
            "image",
            "resolve",
            f"{anonymous_registry.host}/src/multi:v1",
            env=insecure(anonymous_registry),
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == f"{images.multi}\n"

    def test_tags_and_inspect_json(self, anonymous_registry, images):
        """`image tags` lists tags; `image inspect --json` reports platforms and labels."""
        host = anonymous_registry.host
        tags = invoke("--debug", "image", "--insecure-registry", host, "tags", f"{host}/src/single")
        assert "v1" in tags.stdout.split()
        shown = invoke(
            "image", "--insecure-registry", host, "inspect", "--json", f"{host}/src/single:v1"
        )
        data = json.loads(shown.stdout)
        assert data["digest"] == images.single
        assert data["platforms"][0]["platform"] == "linux/amd64"
        assert data["platforms"][0]["labels"]["team"] == "conveyor"
        human = invoke("image", "--insecure-registry", host, "inspect", f"{host}/src/multi:v1")
        assert (
            "linux/arm64" in human.stdout
            and "application/vnd.oci.image.index.v1+json" in human.stdout
        )

    def test_copy_json_between_registries(
        self, anonymous_registry, second_registry, images, repo_name
    ):
        """`image copy --all-platforms --json` copies an index and reports the same digest."""
        source = f"{anonymous_registry.host}/src/multi:v1"
        target = f"{second_registry.host}/{repo_name}:prod"
        result = invoke(
            "image",
            "copy",
            "--all-platforms",
            "--json",
            source,
            target,
            env=insecure(anonymous_registry, second_registry),
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["digest"] == images.multi and data["tag"] == "prod"
        assert data["manifests"] == 3 and data["blobs"]["copied"] == 4
        assert skopeo_digest(target) == images.multi

    def test_copy_index_without_flag_is_an_error(self, anonymous_registry, images, repo_name):
        """Copying an index without --all-platforms fails with one Error: line, exit 1."""
        host = anonymous_registry.host
        result = invoke(
            "image",
            "copy",
            f"{host}/src/multi:v1",
            f"{host}/{repo_name}",
            env=insecure(anonymous_registry),
        )
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: ") and "--all-platforms" in result.stderr

    def test_wrong_password_from_authfile(self, basic_registry, basic_image, tmp_path):
        """Credentials come from --authfile; a rejected password never appears in the output."""
        auth = base64.b64encode(f"{BASIC_USER}:wrong-Secret-9".encode()).decode()
        authfile = tmp_path / "config.json"
        authfile.write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
        result = invoke(
            "image",
            "--authfile",
            str(authfile),
            "resolve",
            f"{basic_registry.host}/team/app:v1",
            env=insecure(basic_registry),
        )
        assert result.exit_code == 1
        assert f"the credentials for {basic_registry.host} were rejected" in result.stderr
        assert "wrong-Secret-9" not in result.output
        good = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
        authfile.write_text(json.dumps({"auths": {basic_registry.host: {"auth": good}}}))
        ok = invoke(
            "image",
            "--authfile",
            str(authfile),
            "tags",
            f"{basic_registry.host}/team/app",
            env=insecure(basic_registry),
        )
        assert ok.exit_code == 0, ok.output

    def test_plain_http_needs_insecure_flag(self, anonymous_registry):
        """Without --insecure-registry the client insists on TLS and says how to opt out."""
        result = invoke("image", "resolve", f"{anonymous_registry.host}/src/single:v1")
        assert result.exit_code == 1
        assert "TLS" in result.stderr or "unreachable" in result.stderr


class TestProgress:
    def test_progress_bar_only_on_a_terminal(
        self, anonymous_registry, second_registry, images, repo_name
    ):
        """On a terminal stderr shows blob progress; stdout keeps only the result."""
        import os
        import pty
        import subprocess
        import sys
        from pathlib import Path

        conveyor = str(Path(sys.executable).with_name("conveyor"))
        env = dict(os.environ, **insecure(anonymous_registry, second_registry), COLUMNS="120")
        args = [
            conveyor,
            "image",
            "copy",
            f"{anonymous_registry.host}/src/layers:v1",
            f"{second_registry.host}/{repo_name}:v1",
        ]
        primary, secondary = pty.openpty()
        try:
            done = subprocess.run(
                args, env=env, stdout=subprocess.PIPE, stderr=secondary, timeout=60
            )
            os.close(secondary)
            chunks = []
            while True:
                try:
                    data = os.read(primary, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(primary)
        terminal = b"".join(chunks).decode(errors="replace")
        assert done.returncode == 0
        assert "copied" in terminal and "sha256:" in terminal
        assert done.stdout.decode().startswith(f"Copied {anonymous_registry.host}/src/layers@")
        piped = subprocess.run(args, env=env, capture_output=True, timeout=60)
        assert piped.returncode == 0 and piped.stderr == b""
