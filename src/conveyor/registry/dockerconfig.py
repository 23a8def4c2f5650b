"""Credentials from docker's ``config.json``: ``auths``, ``credHelpers`` and ``credsStore``.

Same lookup order as docker's CLI (``cli/config/configfile``): a
``credHelpers`` entry for the host, else ``credsStore``, else the inline
``auths`` entry. Helpers are ``docker-credential-<name> get`` with the server
address on stdin, answering ``{"Username": ..., "Secret": ...}``
(docker-credential-helpers protocol). Credentials are wrapped in ``Secret``
at once and never appear in messages.

An identity token (``auths[host].identitytoken``, or a helper answering
``Username: "<token>"``, as docker stores them after a login whose token
service issued a refresh token) becomes ``Credentials.identity_token``: the
OAuth2 refresh token ``auth.RegistryAuth`` asks tokens with.
"""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
from pathlib import Path
from typing import Any

from conveyor.core.credentials import Credentials, Secret
from conveyor.core.errors import CredentialsUnavailable

# Docker Hub is stored under its v1 URL in config.json.
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")
HELPER_TIMEOUT = 30.0
# The user name credential helpers store an identity token under (docker cli/config/credentials).
TOKEN_USERNAME = "<token>"


def default_path(docker_config_dir: str | None) -> Path:
    """Docker's config.json: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    if docker_config_dir:
        return Path(docker_config_dir) / "config.json"
    return Path.home() / ".docker/config.json"


def _keys_for(host: str) -> list[str]:
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        return list(_DOCKER_HUB_KEYS)
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialsUnavailable(f"{path}: not a readable docker config.json ({exc})") from exc
    if not isinstance(data, dict):
        raise CredentialsUnavailable(f"{path}: expected a JSON object")
    return data


def _from_helper(helper: str, server: str) -> Credentials | None:
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(
            [program, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CredentialsUnavailable(
            f"credential helper '{program}' (for {server}) is not on PATH; install it or "
            "remove it from config.json"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CredentialsUnavailable(f"credential helper '{program}' timed out") from exc
    if done.returncode != 0:
        if b"credentials not found" in done.stdout + done.stderr:
            return None
        raise CredentialsUnavailable(
            f"credential helper '{program}' failed for {server} (exit {done.returncode})"
        )
    try:
        data = json.loads(done.stdout)
        username, secret = str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialsUnavailable(
            f"credential helper '{program}' gave no Username/Secret for {server}"
        ) from exc
    if username == TOKEN_USERNAME:
        return Credentials(username="", password=Secret(""), identity_token=Secret(secret))
    return Credentials(username=username, password=Secret(secret))


def _from_auths(entry: dict[str, Any], *, path: Path, key: str) -> Credentials | None:
    identity = entry.get("identitytoken")
    if isinstance(identity, str) and identity:
        # docker login keeps the user name in `auth` (base64 "user:") and drops the password.
        username = str(entry.get("username") or "")
        password = ""
        if entry.get("auth"):
            found = _decode_auth(entry["auth"], path=path, key=key)
            username, password = found.username, found.password.reveal()
        return Credentials(
            username=username, password=Secret(password), identity_token=Secret(identity)
        )
    if entry.get("username") and entry.get("password"):
        return Credentials(username=str(entry["username"]), password=Secret(str(entry["password"])))
    encoded = entry.get("auth")
    if not encoded:
        return None
    return _decode_auth(encoded, path=path, key=key)


def _decode_auth(encoded: object, *, path: Path, key: str) -> Credentials:
    try:
        username, sep, password = base64.b64decode(str(encoded)).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise CredentialsUnavailable(
            f"{path}: auths.{key}.auth is not base64 'user:password'"
        ) from exc
    if not sep:
        raise CredentialsUnavailable(f"{path}: auths.{key}.auth is not base64 'user:password'")
    return Credentials(username=username, password=Secret(password))


def load_credentials(host: str, *, path: Path) -> Credentials | None:
    """The credentials docker would use for ``host``, or None (anonymous)."""
    config = _load(path)
    keys = _keys_for(host)
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _from_helper(str(helpers[key]), key)
    auths = config.get("auths") or {}
    if config.get("credsStore"):
        found = _from_helper(str(config["credsStore"]), keys[0])
        if found is not None:
            return found
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict):
            found = _from_auths(entry, path=path, key=key)
            if found is not None:
                return found
    return None
