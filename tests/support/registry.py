"""Real registries and images for tests: reusable by any test tier (and end-to-end tests).

- ``start_registry``: a real ``docker-registry serve`` (Debian 2.8.2) on a free
  127.0.0.1 port, optionally with htpasswd Basic auth, token auth and TLS.
- ``TokenIssuer``: a small token server following distribution's token spec
  (v2.8.2 ``docs/spec/auth/token.md`` and ``jwt.md``): Basic credentials in,
  a JWT signed RS256 with an ``x5c`` chain to the registry's ``rootcertbundle``;
  also the OAuth2 POST flow (``oauth.md``: password and refresh-token grants),
  and either flow can be switched off.
- ``TestCA``: a throw-away CA issuing the token-signing and TLS certificates.
- ``ImageLayout``: OCI images built with ``umoci`` (no root, no daemon), an
  index written by hand, pushed with ``skopeo``; ``skopeo_digest`` hashes what
  a registry serves, independently of Conveyor.
- ``serve_http``: a ThreadingHTTPServer on loopback for small stand-ins and proxies.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.waiting import wait_until

TOKEN_SERVICE = "conveyor-registry"
TOKEN_ISSUER = "conveyor-test-issuer"
READY_TIMEOUT = 20.0


def require_binary(name: str) -> str:
    """The path of a required program; fails (skips only when CI is unset) if missing."""
    path = shutil.which(name)
    if path:
        return path
    message = f"'{name}' is not installed: run scripts/install"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- certificates ---------------------------------------------------------------


@dataclass
class TestCA:
    """A CA (written to ``ca.pem``) that issues leaf certificates."""

    directory: Path
    key: Any = None
    cert: Any = None

    __test__ = False

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conveyor test CA")])
        self.cert = (
            self._builder(name, name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, _sha256())
        )
        self.ca_file.write_bytes(_pem(self.cert))

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def _builder(self, subject: Any, issuer: Any, public_key: Any) -> Any:
        from cryptography import x509

        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
        )

    def issue(self, name: str, *, ip: str | None = None) -> tuple[Any, Any, Path, Path]:
        """A leaf key and certificate (and their PEM files) for ``name`` (and an IP SAN)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = self._builder(subject, self.cert.subject, key.public_key())
        if ip:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                critical=False,
            )
        cert = builder.sign(self.key, _sha256())
        cert_file = self.directory / f"{name}.pem"
        key_file = self.directory / f"{name}-key.pem"
        cert_file.write_bytes(_pem(cert))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        return key, cert, cert_file, key_file


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- loopback HTTP servers --------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # clients closing connections early is normal in these tests


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free 127.0.0.1 port in a thread; yields ``http://127.0.0.1:PORT``."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not print every request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# -- token issuer --------------------------------------------------------------------

Policy = Callable[[str | None, str], set[str]]


@dataclass(frozen=True)
class TokenRequest:
    """One request the issuer answered: ``grant`` is get, password or refresh_token."""

    grant: str
    user: str | None
    scopes: list[str]
    status: int
    form: dict[str, str] = field(default_factory=dict)  # POST fields, secrets masked


@dataclass
class TokenIssuer:
    """A distribution token server: GET (Basic credentials) and OAuth2 POST.

    ``GET /token?service=&scope=...`` with Basic credentials (token.md), and
    ``POST /token`` form-encoded (oauth.md) with ``grant_type=password``
    (``access_type=offline`` adds a ``refresh_token``) or
    ``grant_type=refresh_token``. ``refuse_get`` (e.g. 404 or 405) makes GET
    answer that status, as OAuth2-only token services do; ``refuse_post``
    does the same for POST, as token services without OAuth2 do.
    ``failing`` lists statuses (e.g. 503) for the next GETs, one each.
    ``users`` maps username to password; ``policy(user, repository)`` gives
    the actions allowed (``user`` is None for anonymous). The token grants the
    intersection of asked and allowed actions, as the spec says. Every
    request is recorded in ``requests``.
    """

    ca: TestCA
    users: dict[str, str]
    policy: Policy
    refuse_get: int | None = None
    refuse_post: int | None = None
    # Statuses to answer the next requests with, one each (a busy or failing service).
    failing: list[int] = field(default_factory=list)
    requests: list[TokenRequest] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token -> user
    url: str = ""
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __post_init__(self) -> None:
        self.key, self.cert, _, _ = self.ca.issue("token-signer")

    def start(self) -> str:
        issuer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                issuer._handle_get(self)

            def do_POST(self) -> None:
                issuer._handle_post(self)

        base = self._stack.enter_context(serve_http(Handler))
        self.url = f"{base}/token"
        return self.url

    def stop(self) -> None:
        self._stack.close()

    def issue_refresh_token(self, user: str) -> str:
        """A refresh token for ``user``, as ``docker login`` stores it (``identitytoken``)."""
        token = secrets.token_urlsafe(32)
        self.refresh_tokens[token] = user
        return token

    @contextlib.contextmanager
    def refusing(self, *, get: int | None = None, post: int | None = None) -> Iterator[None]:
        """Refuse GET and/or POST with these statuses for a while (then as before)."""
        saved = self.refuse_get, self.refuse_post
        self.refuse_get, self.refuse_post = get, post
        try:
            yield
        finally:
            self.refuse_get, self.refuse_post = saved

    def grants(self) -> list[str]:
        """The grant of every request so far, in order (get, password, refresh_token)."""
        return [r.grant for r in self.requests]

    def _user(self, header: str | None) -> tuple[bool, str | None]:
        if not header:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return self.users.get(user) == password, user

    def _handle_get(self, handler: QuietHandler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        ok, user = self._user(handler.headers.get("Authorization"))
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        if self.failing:
            status = self.failing.pop(0)
            self.requests.append(TokenRequest("get", user, scopes, status))
            handler.reply(status, b"service unavailable", {"Retry-After": "0"})
            return
        if self.refuse_get:
            self.requests.append(TokenRequest("get", user, scopes, self.refuse_get))
            handler.reply(self.refuse_get, b"404 page not found")
            return
        if not ok:
            self.requests.append(TokenRequest("get", user, scopes, 401))
            handler.reply(401, b'{"details":"invalid credentials"}')
            return
        self.requests.append(TokenRequest("get", user, scopes, 200))
        token = self.sign(user or "", self._access(user, scopes))
        body = {"token": token, "access_token": token, "expires_in": 300}
        self._reply_token(handler, body)

    def _handle_post(self, handler: QuietHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        masked = {k: ("***" if k in ("password", "refresh_token") else v) for k, v in form.items()}
        grant = form.get("grant_type", "")
        scopes = [s for s in form.get("scope", "").split(" ") if s]
        user: str | None = None

        def answer(status: int, body: dict[str, Any]) -> None:
            self.requests.append(TokenRequest(grant, user, scopes, status, masked))
            if status == 200:
                self._reply_token(handler, body)
            else:
                handler.reply(
                    status, json.dumps(body).encode(), {"Content-Type": "application/json"}
                )

        if self.refuse_post:
            self.requests.append(TokenRequest(grant, None, scopes, self.refuse_post, masked))
            handler.reply(self.refuse_post, b"404 page not found")
            return
        content_type = handler.headers.get("Content-Type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            answer(400, {"error": "invalid_request", "error_description": "not a form"})
            return
        if not form.get("client_id") or form.get("service") != TOKEN_SERVICE:
            answer(400, {"error": "invalid_request", "error_description": "client_id, service"})
            return
        refresh = None
        if grant == "password":
            user = form.get("username", "")
            if self.users.get(user) != form.get("password"):
                answer(401, {"error": "invalid_grant"})
                return
            if form.get("access_type") == "offline":
                refresh = self.issue_refresh_token(user)
        elif grant == "refresh_token":
            refresh = form.get("refresh_token", "")
            user = self.refresh_tokens.get(refresh)
            if user is None:
                answer(401, {"error": "invalid_grant"})
                return
        else:
            answer(400, {"error": "unsupported_grant_type"})
            return
        token = self.sign(user, self._access(user, scopes))
        body = {"access_token": token, "expires_in": 300, "scope": " ".join(scopes)}
        if refresh:
            body["refresh_token"] = refresh
        answer(200, body)

    def _access(self, user: str | None, scopes: list[str]) -> dict[str, set[str]]:
        access: dict[str, set[str]] = {}
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository":
                continue
            granted = set(actions.split(",")) & self.policy(user, name)
            access.setdefault(name, set()).update(granted)
        return access

    def _reply_token(self, handler: QuietHandler, body: dict[str, Any]) -> None:
        body["issued_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = json.dumps(body).encode()
        handler.reply(200, data, {"Content-Type": "application/json"})

    def sign(self, subject: str, access: dict[str, set[str]]) -> str:
        """An RS256 JWT with an x5c chain (leaf, CA) that registry 2.8.2 accepts."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        der = [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in (self.cert, self.ca.cert)
        ]
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": der}
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "access": [
                {"type": "repository", "name": name, "actions": sorted(actions)}
                for name, actions in access.items()
            ],
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), _sha256())
        return f"{signing_input}.{_b64url(signature)}"


# -- registries ------------------------------------------------------------------------


@dataclass
class RegistryProcess:
    """A running ``docker-registry``; ``host`` is what image references carry."""

    host: str
    url: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.directory / "registry.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    """An htpasswd file with bcrypt entries (the only kind 2.8.2 reads)."""
    htpasswd = require_binary("htpasswd")
    lines = [
        subprocess.run(
            [htpasswd, "-Bbn", user, password], check=True, capture_output=True, text=True
        ).stdout.strip()
        for user, password in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_registry(
    directory: Path,
    *,
    htpasswd: Path | None = None,
    token_realm: str | None = None,
    rootcertbundle: Path | None = None,
    tls: tuple[Path, Path] | None = None,
) -> RegistryProcess:
    """Start ``docker-registry serve`` on a free loopback port and wait until it answers."""
    binary = require_binary("docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex}
    if tls:
        http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
        },
        "http": http,
    }
    if htpasswd:
        config["auth"] = {"htpasswd": {"realm": "conveyor-test", "path": str(htpasswd)}}
    elif token_realm:
        config["auth"] = {
            "token": {
                "realm": token_realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(rootcertbundle),
            }
        }
    config_file = directory / "config.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    with (directory / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config_file)], stdout=log, stderr=subprocess.STDOUT
        )
    scheme = "https" if tls else "http"
    registry = RegistryProcess(
        host=f"127.0.0.1:{port}",
        url=f"{scheme}://127.0.0.1:{port}",
        directory=directory,
        process=process,
    )

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited ({process.returncode}):\n{registry.log[-2000:]}")
        try:
            status = httpx.get(f"{registry.url}/v2/", verify=False, timeout=1).status_code
        except httpx.HTTPError:
            return False
        return status in (200, 401)

    try:
        wait_until(answers, timeout=READY_TIMEOUT, what=f"docker-registry on {registry.host}")
    except BaseException:
        registry.stop()
        raise
    return registry


# -- images ----------------------------------------------------------------------------


def run(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a tool; fail the test with its output if it fails."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr[-2000:]}"
        )
    return done.stdout


@dataclass
class ImageLayout:
    """An OCI image layout on disk, filled with ``umoci`` and pushed with ``skopeo``."""

    path: Path

    def __post_init__(self) -> None:
        self.umoci = require_binary("umoci")
        self.skopeo = require_binary("skopeo")
        if not (self.path / "index.json").exists():
            run(self.umoci, "init", "--layout", self.path)

    def build(
        self,
        tag: str,
        *,
        layers: list[dict[str, bytes]],
        architecture: str = "amd64",
        labels: dict[str, str] | None = None,
        created: str | None = None,
    ) -> None:
        """An image with one layer per dict (path -> content), for ``architecture``.

        ``created`` (RFC 3339) sets the config's creation time; umoci's default is now.
        """
        image = f"{self.path}:{tag}"
        run(self.umoci, "new", "--image", image)
        for i, files in enumerate(layers):
            source = self.path.parent / f".src-{tag}-{i}"
            shutil.rmtree(source, ignore_errors=True)
            for name, content in files.items():
                target = source / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            run(self.umoci, "insert", "--image", image, source, f"/layer{i}")
            shutil.rmtree(source)
        args: list[str | Path] = [self.umoci, "config", "--image", image]
        args += ["--architecture", architecture, "--os", "linux"]
        for key, value in (labels or {}).items():
            args += ["--config.label", f"{key}={value}"]
        if created is not None:
            args += ["--created", created]
        run(*args)

    def _index(self) -> dict[str, Any]:
        return json.loads((self.path / "index.json").read_text())

    def _blob(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (self.path / "blobs" / "sha256" / digest).write_bytes(data)
        return f"sha256:{digest}"

    def set_created_text(self, tag: str, created: str) -> None:
        """Write ``created`` into the config of image ``tag`` as it is, valid RFC 3339 or not.

        umoci only takes RFC 3339 times; this rewrites the config and manifest
        blobs (and the index entry) for configs other tools write, e.g. without a zone.
        """
        index = self._index()
        entry = next(
            e
            for e in index["manifests"]
            if e.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
        )
        manifest = json.loads(self._blob(entry["digest"]).read_bytes())
        config = json.loads(self._blob(manifest["config"]["digest"]).read_bytes())
        config["created"] = created
        raw_config = json.dumps(config).encode()
        manifest["config"]["digest"] = self._put_blob(raw_config)
        manifest["config"]["size"] = len(raw_config)
        raw_manifest = json.dumps(manifest).encode()
        entry["digest"] = self._put_blob(raw_manifest)
        entry["size"] = len(raw_manifest)
        (self.path / "index.json").write_text(json.dumps(index))

    def descriptor(self, tag: str) -> dict[str, Any]:
        """The layout's descriptor for ``tag``."""
        for entry in self._index()["manifests"]:
            if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return dict(entry)
        raise KeyError(tag)

    def write_index(self, tag: str, children: dict[str, tuple[str, str]]) -> str:
        """An OCI image index over image tags (tag -> (os, architecture)); returns its digest."""
        manifests = []
        for child, (os_, arch) in children.items():
            entry = self.descriptor(child)
            entry.pop("annotations", None)
            entry["platform"] = {"architecture": arch, "os": os_}
            manifests.append(entry)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            }
        ).encode()
        digest = hashlib.sha256(body).hexdigest()
        (self.path / "blobs" / "sha256" / digest).write_bytes(body)
        index = self._index()
        index["manifests"].append(
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": f"sha256:{digest}",
                "size": len(body),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
        (self.path / "index.json").write_text(json.dumps(index))
        return f"sha256:{digest}"

    def push(self, tag: str, destination: str, *, creds: str | None = None) -> str:
        """``skopeo copy --all`` to ``docker://destination``; returns the pushed digest."""
        args: list[str | Path] = [self.skopeo, "copy", "--all", "--dest-tls-verify=false"]
        if creds:
            args += ["--dest-creds", creds]
        run(*args, f"oci:{self.path}:{tag}", f"docker://{destination}")
        return str(self.descriptor(tag)["digest"])


def skopeo_digest(reference: str, *, creds: str | None = None) -> str:
    """``sha256`` of ``skopeo inspect --raw`` of a registry image: an independent check."""
    args: list[str | Path] = [require_binary("skopeo"), "inspect", "--raw", "--tls-verify=false"]
    if creds:
        args += ["--creds", creds]
    raw = subprocess.run(
        [*map(str, args), f"docker://{reference}"], capture_output=True, check=False
    )
    if raw.returncode != 0:
        pytest.fail(f"skopeo inspect {reference} failed: {raw.stderr.decode()[-1000:]}")
    return "sha256:" + hashlib.sha256(raw.stdout).hexdigest()


def random_bytes(size: int, *, seed: int) -> bytes:
    """Incompressible, reproducible bytes."""
    return hashlib.shake_256(f"conveyor-test:{seed}".encode()).digest(size)
