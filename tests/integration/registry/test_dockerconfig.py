"""Credentials from docker config.json, including a real credential-helper subprocess."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from conveyor.core import errors
from conveyor.registry.dockerconfig import load_credentials

HELPER = """#!/bin/sh
read server
if [ "$1" = get ] && [ "$server" = "{host}" ]; then
  echo '{{"ServerURL":"{host}","Username":"helper-user","Secret":"helper-Secret-1"}}'
  exit 0
fi
if [ "$1" = get ] && [ "$server" = "token.example" ]; then
  echo '{{"ServerURL":"token.example","Username":"<token>","Secret":"identity-Token-9"}}'
  exit 0
fi
echo "credentials not found in native keychain"
exit 1
"""


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def helper_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A docker-credential-testhelper script on PATH that knows reg.example:5000."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-testhelper"
    script.write_text(HELPER.format(host="reg.example:5000"))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return "testhelper"


class TestDockerConfig:
    def test_inline_auth(self, tmp_path):
        """An auths entry's base64 user:password becomes masked Credentials."""
        auth = base64.b64encode(b"bob:inline-Secret-2").decode()
        path = write_config(tmp_path, {"auths": {"https://reg.example:5000": {"auth": auth}}})
        found = load_credentials("reg.example:5000", path=path)
        assert found is not None and found.username == "bob"
        assert found.password.reveal() == "inline-Secret-2"
        assert "inline-Secret-2" not in repr(found)

    def test_missing_file_or_host_is_anonymous(self, tmp_path):
        """No config file, or no entry for the host, means anonymous access."""
        assert load_credentials("reg.example:5000", path=tmp_path / "absent.json") is None
        path = write_config(tmp_path, {"auths": {"other:5000": {"auth": "eDp5"}}})
        assert load_credentials("reg.example:5000", path=path) is None

    def test_cred_helper_for_host(self, tmp_path, helper_on_path):
        """A credHelpers entry runs docker-credential-<name> get with the host on stdin."""
        path = write_config(tmp_path, {"credHelpers": {"reg.example:5000": helper_on_path}})
        found = load_credentials("reg.example:5000", path=path)
        assert found is not None
        assert (found.username, found.password.reveal()) == ("helper-user", "helper-Secret-1")

    def test_creds_store_falls_back_to_auths(self, tmp_path, helper_on_path):
        """credsStore is asked first; when it has nothing, the inline auths entry is used."""
        auth = base64.b64encode(b"carol:inline-3").decode()
        path = write_config(
            tmp_path, {"credsStore": helper_on_path, "auths": {"other.example": {"auth": auth}}}
        )
        assert load_credentials("reg.example:5000", path=path).username == "helper-user"
        assert load_credentials("other.example", path=path).username == "carol"

    def test_missing_helper_is_actionable(self, tmp_path):
        """A helper that is not installed gives CredentialsUnavailable naming the program."""
        path = write_config(tmp_path, {"credHelpers": {"reg.example:5000": "nonexistent"}})
        with pytest.raises(errors.CredentialsUnavailable) as caught:
            load_credentials("reg.example:5000", path=path)
        assert "docker-credential-nonexistent" in str(caught.value)
        assert "not on PATH" in str(caught.value)

    def test_corrupt_config(self, tmp_path):
        """A config.json that is not JSON is reported with its path."""
        path = tmp_path / "config.json"
        path.write_text("{nope")
        with pytest.raises(errors.CredentialsUnavailable) as caught:
            load_credentials("reg.example:5000", path=path)
        assert str(path) in str(caught.value)

    def test_identity_token_in_auths(self, tmp_path):
        """`identitytoken` (docker login to an OAuth2 token service) is kept, masked, apart.

        docker writes the user name as base64 "user:" (no password) next to it.
        """
        auth = base64.b64encode(b"dave:").decode()
        path = write_config(
            tmp_path,
            {"auths": {"reg.example:5000": {"auth": auth, "identitytoken": "identity-Token-7"}}},
        )
        found = load_credentials("reg.example:5000", path=path)
        assert found is not None and found.identity_token is not None
        assert (found.username, found.password.reveal()) == ("dave", "")
        assert found.identity_token.reveal() == "identity-Token-7"
        assert "identity-Token-7" not in repr(found)

    def test_identity_token_from_helper(self, tmp_path, helper_on_path):
        """A helper answering Username "<token>" hands over an identity token, not a password."""
        path = write_config(tmp_path, {"credHelpers": {"token.example": helper_on_path}})
        found = load_credentials("token.example", path=path)
        assert found is not None and found.identity_token is not None
        assert (found.username, found.password.reveal()) == ("", "")
        assert found.identity_token.reveal() == "identity-Token-9"
