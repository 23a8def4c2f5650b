"""Registry authentication as an ``httpx.Auth`` flow: anonymous, Basic, Bearer token.

The flow follows distribution's token spec (v2.8.2 ``docs/spec/auth/token.md``,
FORMATS.md 1.12): send the request; on ``401`` read ``WWW-Authenticate``; for
``Basic`` resend with credentials; for ``Bearer`` fetch a token from the
``realm`` for the ``service`` and the scopes (the challenge's plus the ones the
request needs), cache it until it expires, and resend. Once a registry's scheme
is known, later requests carry credentials up front, so streamed uploads are
not sent twice. A cross-repository mount (``?from=``) widens the scope with
``repository:<from>:pull`` (FORMATS.md 1.6).

Tokens come from the realm in one of two ways:

- ``GET <realm>?service=&scope=`` with Basic credentials (token spec), the
  default, which every token service serves;
- ``POST <realm>``, form-encoded, the OAuth2 flow of distribution's
  ``docs/spec/auth/oauth.md``: ``grant_type=password`` (username, password,
  ``access_type=offline``) or ``grant_type=refresh_token``, with ``service``,
  space-separated ``scope`` and ``client_id=conveyor``. The answer's
  ``access_token`` is the token; a ``refresh_token`` in it is kept (in
  memory) and asked with for every later token instead of the password.

POST is used when the token service answers the GET with 404 or 405
(remembered for the registry), when the registry's ``token_flow`` is
``oauth2``, and when the credentials carry an identity token (docker's
``config.json`` ``identitytoken``, a refresh token) -- as docker does. A 404
to a password POST falls back to GET (as oauth.md says); a rejected refresh
token falls back to the password when there is one. Passwords and tokens
never appear in messages.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

import httpx

from conveyor.core.credentials import Credentials, Secret
from conveyor.core.errors import RegistryUnauthorized, RegistryUnavailable
from conveyor.registry._errors import parse_retry_after

# Tokens without expires_in last 60 s (token spec); renew this long before expiry.
DEFAULT_TOKEN_LIFETIME = 60.0
EXPIRY_MARGIN = 10.0
# How tokens are asked for: "auto" (GET; POST when GET is refused or an
# identity token is held) or "oauth2" (POST first; GET after a 404).
TokenFlow = Literal["auto", "oauth2"]
TOKEN_FLOWS: tuple[TokenFlow, ...] = ("auto", "oauth2")
# The OAuth2 client_id sent with POST token requests (oauth.md: any meaningful name).
OAUTH_CLIENT_ID = "conveyor"
# Token-endpoint answers to a GET that mean "this endpoint takes POST only".
GET_REFUSED = frozenset({404, 405})
# Answers to a POST grant that mean the grant (password or refresh token) was refused
# (RFC 6749 5.2: 400 invalid_grant, 401 invalid_client).
GRANT_REFUSED = frozenset({400, 401, 403})
Method = Literal["get", "password", "refresh"]
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


@dataclass(slots=True)
class _Fetch:
    """One token fetch: its scopes, the way being tried and the ways tried already."""

    scopes: frozenset[str]
    method: Method
    tried: set[Method] = field(default_factory=set)


class RegistryAuth(httpx.Auth):
    """Authenticates to one registry; holds its token cache. Never logs a credential."""

    def __init__(
        self,
        credentials: Credentials | None,
        *,
        registry: str,
        token_flow: TokenFlow = "auto",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._registry = registry
        self._token_flow = token_flow
        self._clock = clock
        self._scheme: str | None = None
        self._bearer: dict[str, str] = {}
        self._tokens: list[_Token] = []
        # The OAuth2 refresh token: docker's identity token, or one the token service gave.
        self._refresh: Secret | None = credentials.identity_token if credentials else None
        self._post = token_flow == "oauth2"  # POST with the password (configured or learnt)
        self._post_refused = False  # the token service answered a POST with 404/405
        self.token_requests: list[frozenset[str]] = []  # scopes asked for, for diagnostics

    def __repr__(self) -> str:
        return (
            f"RegistryAuth(registry={self._registry!r}, scheme={self._scheme!r}, "
            f"token_flow={self._token_flow!r})"
        )

    def _basic_header(self) -> str | None:
        if self._credentials is None or not self._credentials.password:
            return None
        pair = f"{self._credentials.username}:{self._credentials.password.reveal()}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    @property
    def _has_password(self) -> bool:
        return self._credentials is not None and bool(self._credentials.password)

    def _cached(self, scopes: frozenset[str]) -> str | None:
        now = self._clock()
        self._tokens = [t for t in self._tokens if t.expires_at > now]
        for token in self._tokens:
            if scopes <= token.scopes:
                return token.value
        return None

    # -- fetching a token: GET, or OAuth2 POST, with fallbacks ---------------

    def _first_method(self) -> Method:
        if self._refresh is not None and not self._post_refused:
            return "refresh"
        if self._post and self._has_password and not self._post_refused:
            return "password"
        return "get"

    def _start_fetch(self, scopes: frozenset[str]) -> tuple[_Fetch, httpx.Request | str]:
        fetch = _Fetch(scopes, self._first_method())
        return fetch, self._token_request(fetch)

    def _token_request(self, fetch: _Fetch) -> httpx.Request:
        fetch.tried.add(fetch.method)
        self.token_requests.append(fetch.scopes)
        realm = self._bearer.get("realm", "")
        service = self._bearer.get("service", "")
        if fetch.method == "get":
            params: list[tuple[str, str | int | float | bool | None]] = []
            if service:
                params.append(("service", service))
            params.extend(("scope", scope) for scope in sorted(fetch.scopes))
            headers = {}
            basic = self._basic_header()
            if basic:
                headers["Authorization"] = basic
            return httpx.Request("GET", realm, params=params, headers=headers)
        form = {"client_id": OAUTH_CLIENT_ID}
        if service:
            form["service"] = service
        if fetch.scopes:
            form["scope"] = " ".join(sorted(fetch.scopes))
        if fetch.method == "refresh":
            assert self._refresh is not None, "a refresh grant needs a refresh token"
            form |= {"grant_type": "refresh_token", "refresh_token": self._refresh.reveal()}
        else:
            assert self._credentials is not None, "a password grant needs credentials"
            form |= {
                "grant_type": "password",
                "username": self._credentials.username,
                "password": self._credentials.password.reveal(),
                "access_type": "offline",
            }
        return httpx.Request("POST", realm, data=form)

    def _answer(self, fetch: _Fetch, response: httpx.Response) -> httpx.Request | str:
        """The token, or the next token request to send; raises when none is left to try."""
        status = response.status_code
        if status == 200:
            return self._store_token(fetch, response)
        realm = self._bearer.get("realm", "")
        where = f"the token service {realm} of {self._registry}"
        if status == 429 or status >= 500:
            # Busy or failing, not a verdict on the credentials: the client retries.
            raise RegistryUnavailable(
                f"{where} is unavailable (HTTP {status}); try again later",
                registry=self._registry,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if fetch.method == "get" and status in GET_REFUSED:
            # A token service that serves only the OAuth2 POST flow.
            self._post = True
            if self._refresh is not None and "refresh" not in fetch.tried:
                return self._next(fetch, "refresh")
            if self._has_password and "password" not in fetch.tried:
                return self._next(fetch, "password")
            raise RegistryUnauthorized(
                f"{where} answered the token request (GET) with HTTP {status}: it takes "
                f"only the OAuth2 POST flow, which needs credentials; configure a username "
                f"and password (or docker login) for {self._registry}",
                registry=self._registry,
            )
        if fetch.method != "get" and status in GET_REFUSED:
            # oauth.md: a token service without OAuth2 answers the POST with 404.
            self._post, self._post_refused = False, True
            if fetch.method == "password" and "get" not in fetch.tried:
                return self._next(fetch, "get")
            if fetch.method == "password":
                raise RegistryUnauthorized(
                    f"{where} answered both token requests, GET and OAuth2 POST, with "
                    f"HTTP {status}; check the realm the registry {self._registry} names",
                    registry=self._registry,
                )
            raise RegistryUnauthorized(
                f"{where} does not take the OAuth2 POST flow (HTTP {status}), and the "
                f"identity token for {self._registry} (docker config.json) works only with "
                f"it; log in with a username and password instead",
                registry=self._registry,
            )
        if fetch.method == "refresh" and status in GRANT_REFUSED:
            self._refresh = None
            if self._has_password and "password" not in fetch.tried:
                self._post = True
                return self._next(fetch, "password")
            raise RegistryUnauthorized(
                f"{where} rejected the identity token (refresh token) for {self._registry} "
                f"(HTTP {status}); it may have expired or been revoked: log in again "
                f"(docker login {self._registry})",
                registry=self._registry,
            )
        if status in GRANT_REFUSED and self._credentials is None:
            raise RegistryUnauthorized(
                f"{where} refused an anonymous token (HTTP {status}); {self._registry} "
                "requires credentials and none are configured for it",
                registry=self._registry,
            )
        if status in GRANT_REFUSED and (status != 400 or fetch.method == "password"):
            hint = ""
            if fetch.method == "password" and self._token_flow == "oauth2":
                hint = (
                    " (or, if the token service takes no OAuth2 POST, remove "
                    "token_flow: oauth2 from the registry)"
                )
            raise RegistryUnauthorized(
                f"{where} rejected the credentials (HTTP {status}, "
                f"{'GET' if fetch.method == 'get' else 'OAuth2 POST'}); check the username "
                f"and password for {self._registry}{hint}",
                registry=self._registry,
            )
        raise RegistryUnauthorized(
            f"{where} gave no token (HTTP {status})",
            registry=self._registry,
        )

    def _next(self, fetch: _Fetch, method: Method) -> httpx.Request:
        fetch.method = method
        return self._token_request(fetch)

    def _store_token(self, fetch: _Fetch, response: httpx.Response) -> str:
        realm = self._bearer.get("realm", "")
        try:
            data = json.loads(response.content)
            value = data.get("token") or data.get("access_token")
            lifetime = float(data.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
            refresh = data.get("refresh_token") if fetch.method != "get" else None
        except (ValueError, AttributeError, TypeError):
            value, lifetime, refresh = None, 0.0, None
        if not isinstance(value, str) or not value:
            raise RegistryUnauthorized(
                f"the token service {realm} of {self._registry} gave no token "
                f"(HTTP {response.status_code})",
                registry=self._registry,
            )
        if isinstance(refresh, str) and refresh:
            self._refresh = Secret(refresh)
        expires_at = self._clock() + max(lifetime - EXPIRY_MARGIN, 1.0)
        self._tokens.append(_Token(value, fetch.scopes, expires_at))
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
                fetch, step = self._start_fetch(needed)
                while isinstance(step, httpx.Request):
                    token_response = yield step
                    await token_response.aread()
                    step = self._answer(fetch, token_response)
                token = step
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
            fetch, step = self._start_fetch(scopes)
            while isinstance(step, httpx.Request):
                token_response = yield step
                await token_response.aread()
                step = self._answer(fetch, token_response)
            request.headers["Authorization"] = f"Bearer {step}"
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Only the async client is supported."""
        raise NotImplementedError("RegistryAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover - makes this a generator

    @property
    def authenticated(self) -> bool:
        """True when credentials are configured."""
        return self._credentials is not None
