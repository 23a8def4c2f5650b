"""Registry authentication as an ``httpx.Auth`` flow: anonymous, Basic, Bearer token.

The flow follows distribution's token spec (v2.8.2 ``docs/spec/auth/token.md``,
FORMATS.md 1.12): send the request; on ``401`` read ``WWW-Authenticate``; for
``Basic`` resend with credentials; for ``Bearer`` fetch a token from the
``realm`` for the ``service`` and the scopes (the challenge's plus the ones the
request needs), cache it until it expires, and resend. Once a registry's scheme
is known, later requests carry credentials up front, so streamed uploads are
not sent twice. A cross-repository mount (``?from=``) widens the scope with
``repository:<from>:pull`` (FORMATS.md 1.6).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

from conveyor.core.credentials import Credentials
from conveyor.core.errors import RegistryUnauthorized

# Tokens without expires_in last 60 s (token spec); renew this long before expiry.
DEFAULT_TOKEN_LIFETIME = 60.0
EXPIRY_MARGIN = 10.0
_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')
_REPO_PATH_RE = re.compile(r"/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str  # lower-case: "basic" or "bearer"
    params: dict[str, str]

    @classmethod
    def parse(cls, header: str) -> Challenge:
        """Parse ``Scheme k="v", k=v``; unknown parts are ignored."""
        scheme, _, rest = header.strip().partition(" ")
        params = {m[1].lower(): m[2] if m[2] else m[3] for m in _PARAM_RE.finditer(rest)}
        return cls(scheme.lower(), params)


def scopes_for(request: httpx.Request) -> frozenset[str]:
    """The token scopes a Distribution API request needs (empty for ``/v2/``)."""
    match = _REPO_PATH_RE.search(request.url.path)
    if not match:
        return frozenset()
    name = unquote(match["name"])
    if request.method in ("GET", "HEAD"):
        actions = "pull"
    elif request.method == "DELETE":
        actions = "delete"
    else:
        actions = "pull,push"
    scopes = {f"repository:{name}:{actions}"}
    source = request.url.params.get("from")
    if source:
        scopes.add(f"repository:{source}:pull")
    return frozenset(scopes)


@dataclass(slots=True)
class _Token:
    value: str
    scopes: frozenset[str]
    expires_at: float


class RegistryAuth(httpx.Auth):
    """Authenticates to one registry; holds its token cache. Never logs a credential."""

    def __init__(
        self,
        credentials: Credentials | None,
        *,
        registry: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._registry = registry
        self._clock = clock
        self._scheme: str | None = None
        self._bearer: dict[str, str] = {}
        self._tokens: list[_Token] = []
        self.token_requests: list[frozenset[str]] = []  # scopes asked for, for diagnostics

    def __repr__(self) -> str:
        return f"RegistryAuth(registry={self._registry!r}, scheme={self._scheme!r})"

    def _basic_header(self) -> str | None:
        if self._credentials is None:
            return None
        pair = f"{self._credentials.username}:{self._credentials.password.reveal()}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def _cached(self, scopes: frozenset[str]) -> str | None:
        now = self._clock()
        self._tokens = [t for t in self._tokens if t.expires_at > now]
        for token in self._tokens:
            if scopes <= token.scopes:
                return token.value
        return None

    def _token_request(self, scopes: frozenset[str]) -> httpx.Request:
        realm = self._bearer.get("realm", "")
        params: list[tuple[str, str | int | float | bool | None]] = []
        if self._bearer.get("service"):
            params.append(("service", self._bearer["service"]))
        params.extend(("scope", scope) for scope in sorted(scopes))
        headers = {}
        basic = self._basic_header()
        if basic:
            headers["Authorization"] = basic
        self.token_requests.append(scopes)
        return httpx.Request("GET", realm, params=params, headers=headers)

    def _store_token(self, scopes: frozenset[str], response: httpx.Response) -> str:
        realm = self._bearer.get("realm", "")
        if response.status_code in (401, 403):
            raise RegistryUnauthorized(
                f"the token service {realm} of {self._registry} rejected the credentials "
                f"({response.status_code}); check the username and password for {self._registry}",
                registry=self._registry,
            )
        try:
            data = json.loads(response.content)
            value = data.get("token") or data.get("access_token")
            lifetime = float(data.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value, lifetime = None, 0.0
        if response.status_code != 200 or not isinstance(value, str) or not value:
            raise RegistryUnauthorized(
                f"the token service {realm} of {self._registry} gave no token "
                f"(HTTP {response.status_code})",
                registry=self._registry,
            )
        expires_at = self._clock() + max(lifetime - EXPIRY_MARGIN, 1.0)
        self._tokens.append(_Token(value, scopes, expires_at))
        return value

    def _learn(self, response: httpx.Response) -> Challenge | None:
        header = response.headers.get("WWW-Authenticate")
        if not header:
            return None
        challenge = Challenge.parse(header)
        if challenge.scheme == "bearer" and challenge.params.get("realm"):
            self._scheme = "bearer"
            self._bearer = {k: v for k, v in challenge.params.items() if k in ("realm", "service")}
            return challenge
        if challenge.scheme == "basic":
            self._scheme = "basic"
            return challenge
        return None

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send the request with what we know; answer one 401 challenge, then give up."""
        needed = scopes_for(request)
        sent_credentials = False
        if self._scheme == "basic" and self._credentials is not None:
            request.headers["Authorization"] = self._basic_header() or ""
            sent_credentials = True
        elif self._scheme == "bearer" and needed:
            token = self._cached(needed)
            if token is None:
                token_response = yield self._token_request(needed)
                await token_response.aread()
                token = self._store_token(needed, token_response)
            request.headers["Authorization"] = f"Bearer {token}"
            sent_credentials = True
        response = yield request
        if response.status_code != 401:
            return
        challenge = self._learn(response)
        if challenge is None:
            return
        if not needed and challenge.scheme == "bearer":
            return  # the /v2/ version check: the challenge is learnt, no token needed yet
        if challenge.scheme == "basic":
            if self._credentials is None or sent_credentials:
                return
            request.headers["Authorization"] = self._basic_header() or ""
        else:
            scopes = needed | frozenset(challenge.params.get("scope", "").split())
            token_response = yield self._token_request(scopes)
            await token_response.aread()
            request.headers["Authorization"] = f"Bearer {self._store_token(scopes, token_response)}"
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Only the async client is supported."""
        raise NotImplementedError("RegistryAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover - makes this a generator

    @property
    def authenticated(self) -> bool:
        """True when credentials are configured."""
        return self._credentials is not None
