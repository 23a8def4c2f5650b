"""Signing keys (a JWKS) for ``auth: oidc`` webhook endpoints: fetched, cached, refetched.

The webhook hot path runs on the server's event loop, so a key lookup never
does I/O: ``JwksKeys.get`` reads an in-memory snapshot (a dict swapped whole
when a fetch succeeds). Fetching happens in a short-lived daemon thread
started by ``request_refresh``, which returns a future to wait on:

- at server start (the app's lifespan), so the keys are normally loaded
  before the first delivery;
- when a token names a key id the snapshot lacks (``UnknownSigningKey``): the
  endpoint awaits the future (``asyncio.wrap_future``: the loop keeps serving)
  and verifies once more. That is how rotated keys arrive, and how a process
  that skipped the start-up fetch loads them;
- when the snapshot is older than the URL's ``Cache-Control: max-age``: ``get``
  starts a refresh and keeps answering from the old snapshot meanwhile.

At most one fetch runs at a time, and a new one starts at most once per
``MIN_REFETCH_INTERVAL`` (``request_refresh`` returns None otherwise), so a
flood of tokens naming made-up key ids costs one fetch per interval, not one
per request. A failed fetch keeps the previous keys and is named in
``describe()`` (so in the 401's message).

Only RSA keys with a ``kid`` (and ``use: sig`` or no ``use``) are kept:
Google signs its ID tokens with RS256.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt

# A flood of unknown key ids makes at most one fetch per this many seconds.
MIN_REFETCH_INTERVAL = 30.0
# How long fetched keys are fresh when the URL's answer says nothing (Cache-Control max-age).
DEFAULT_MAX_AGE = 3600.0
FETCH_TIMEOUT = 10.0
# Google's key set is ~1.5 KiB; anything near this is not a key set.
MAX_JWKS_BYTES = 256 * 1024

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\b", re.IGNORECASE)


class JwksError(Exception):
    """A key set could not be fetched or read; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """One fetch: the keys by id, and for how many seconds they are fresh (None: until
    a token names a key id they lack)."""

    keys: dict[str, jwt.PyJWK]
    max_age: float | None


Fetcher = Callable[[], Fetched]


def parse_jwks(raw: bytes, *, source: str) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a JWKS document, by ``kid``; raises JwksError."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JwksError(f"{source}: not a JSON document") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError(f"{source}: not a JWKS (a JSON object with a 'keys' array)")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", "RS256") != "RS256":
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm="RS256")
        except jwt.PyJWTError:
            continue  # a malformed key is skipped; the others still count
    if not keys:
        raise JwksError(f"{source}: no RSA signing key with a 'kid'")
    return keys


def url_fetcher(url: str, *, timeout: float = FETCH_TIMEOUT) -> Fetcher:
    """Fetch the key set at ``url`` (https, redirects not followed), fresh for its max-age."""

    def fetch() -> Fetched:
        try:
            response = httpx.get(url, timeout=timeout, headers={"Accept": "application/json"})
        except httpx.HTTPError as error:
            raise JwksError(f"{url}: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise JwksError(f"{url}: HTTP {response.status_code}")
        if len(response.content) > MAX_JWKS_BYTES:
            raise JwksError(f"{url}: {len(response.content)} bytes is too large for a key set")
        return Fetched(
            keys=parse_jwks(response.content, source=url),
            max_age=freshness(response.headers.get("cache-control"), response.headers.get("age")),
        )

    return fetch


def file_fetcher(path: Path) -> Fetcher:
    """Read the key set in ``path``; it is read again only when a token names an unknown kid."""

    def fetch() -> Fetched:
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise JwksError(f"{path}: {error.strerror or error}") from None
        return Fetched(keys=parse_jwks(raw, source=str(path)), max_age=None)

    return fetch


def freshness(cache_control: str | None, age: str | None) -> float:
    """Seconds a response stays fresh: its max-age less its Age (RFC 9111 §4.2)."""
    if cache_control is None:
        return DEFAULT_MAX_AGE
    if _NO_CACHE.search(cache_control):
        return 0.0
    found = _MAX_AGE.search(cache_control)
    if found is None:
        return DEFAULT_MAX_AGE
    already = int(age) if age is not None and age.strip().isdigit() else 0
    return float(max(0, int(found.group(1)) - already))


class JwksKeys:
    """One key set (a URL or a file), held in memory; implements ``webhooks.oidc.SigningKeys``."""

    def __init__(
        self,
        fetch: Fetcher,
        *,
        source: str,
        min_interval: float = MIN_REFETCH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._fetch = fetch
        self._min_interval = min_interval
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._expires_at: float | None = None
        self._error: str | None = None
        self._fetched = False
        self._lock = threading.Lock()
        self._inflight: Future[None] | None = None
        self._last_start: float | None = None
        self.fetches = 0  # fetches started, for tests and diagnostics

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id in the current snapshot; never waits for a fetch."""
        expires_at = self._expires_at
        if expires_at is not None and self._clock() >= expires_at:
            self.request_refresh()  # in the background; meanwhile the old keys answer
        return self._keys.get(kid)

    def describe(self) -> str:
        """The source, and what went wrong with the last fetch (if it did)."""
        if self._error is not None:
            return f"{self.source} (last fetch failed: {self._error})"
        if not self._fetched:
            return f"{self.source} (not fetched yet)"
        return self.source

    def request_refresh(self) -> Future[None] | None:
        """Start a fetch in a thread (or join the one running); None when rate-limited.

        The future completes (never with an exception) once the snapshot is
        replaced or the fetch failed; it cannot be cancelled.
        """
        with self._lock:
            if self._inflight is not None and not self._inflight.done():
                return self._inflight
            now = self._clock()
            if self._last_start is not None and now - self._last_start < self._min_interval:
                return None
            self._last_start = now
            self.fetches += 1
            future: Future[None] = Future()
            future.set_running_or_notify_cancel()  # waiters cannot cancel it for the others
            self._inflight = future
        threading.Thread(
            target=self._run, args=(future,), name="conveyor-jwks", daemon=True
        ).start()
        return future

    def _run(self, future: Future[None]) -> None:
        try:
            fetched = self._fetch()
        except JwksError as error:
            self._error = str(error)
        except Exception as error:  # anything else must not kill the waiters either
            self._error = f"{type(error).__name__}: {error}"
        else:
            self._keys = fetched.keys
            self._expires_at = None if fetched.max_age is None else self._clock() + fetched.max_age
            self._error = None
            self._fetched = True
        finally:
            future.set_result(None)
