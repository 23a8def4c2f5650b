"""Translate registry responses and httpx exceptions into Conveyor's registry errors.

Error bodies follow distribution-spec "Error Codes" (FORMATS.md 1.11); a body
may also be plain text (2.8.2's ``404 page not found``), so every field is optional.
Remote text is truncated before it reaches a message.
"""

from __future__ import annotations

import email.utils
import json
import time

import httpx

from conveyor.core import errors

# Long enough for any registry's error message, short enough for one log line.
TEXT_ERROR_MAX_SIZE = 300


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date, RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def error_codes(response: httpx.Response) -> list[tuple[str, str]]:
    """(code, message) pairs of a distribution error body; empty when it is not one."""
    try:
        data = json.loads(response.content)
    except (ValueError, httpx.ResponseNotRead):
        return []
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return []
    pairs = []
    for item in data["errors"]:
        if isinstance(item, dict):
            pairs.append((str(item.get("code", "")), str(item.get("message", ""))))
    return pairs


def _remote_text(response: httpx.Response) -> str:
    pairs = error_codes(response)
    if pairs:
        text = "; ".join(f"{code}: {message}" if message else code for code, message in pairs)
    else:
        try:
            text = response.text.strip()
        except httpx.ResponseNotRead:
            text = ""
    text = " ".join(text.split())
    if len(text) > TEXT_ERROR_MAX_SIZE:
        text = text[:TEXT_ERROR_MAX_SIZE] + "…"
    return f"{response.status_code} {text}".strip() if text else str(response.status_code)


def from_response(
    response: httpx.Response, *, registry: str, what: str, authenticated: bool
) -> errors.RegistryError:
    """The Conveyor error for a failed registry response (the caller raises it)."""
    status = response.status_code
    codes = {code for code, _ in error_codes(response)}
    detail = _remote_text(response)
    if status == 401 and "insufficient_scope" in response.headers.get("WWW-Authenticate", ""):
        # Token registries answer 401 (not 403) when the token lacks an action
        # (distribution v2.8.2 registry/auth/token/accesscontroller.go).
        return errors.RegistryForbidden(
            f"{what}: {registry} refused this for the configured credentials "
            f"(insufficient scope: {detail}); grant them pull/push on the repository",
            registry=registry,
        )
    if status == 401:
        hint = (
            f"the credentials for {registry} were rejected; check the username and password"
            if authenticated
            else f"{registry} requires credentials and none are configured for it; "
            "add them to the registry definition or docker config.json (--authfile)"
        )
        return errors.RegistryUnauthorized(f"{what}: {hint} ({detail})", registry=registry)
    if status == 403 or "DENIED" in codes:
        return errors.RegistryForbidden(
            f"{what}: {registry} refused this for the configured credentials ({detail}); "
            "grant them pull/push on the repository",
            registry=registry,
        )
    if "NAME_UNKNOWN" in codes:
        return errors.RepositoryUnknown(
            f"{what}: repository unknown in {registry} ({detail})", registry=registry
        )
    if "MANIFEST_UNKNOWN" in codes or (status == 404 and "/manifests/" in response.url.path):
        return errors.ManifestUnknown(
            f"{what}: manifest unknown in {registry} ({detail})", registry=registry
        )
    if status == 415 or codes & {"UNSUPPORTED", "MANIFEST_INVALID"}:
        return errors.UnsupportedMediaType(
            f"{what}: {registry} does not accept this content ({detail})", registry=registry
        )
    if status == 429 or status >= 500:
        return errors.RegistryUnavailable(
            f"{what}: {registry} is unavailable ({detail}); try again later",
            registry=registry,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    return errors.RegistryRequestRejected(
        f"{what}: {registry} rejected the request ({detail})", registry=registry
    )


def from_transport(exc: httpx.HTTPError, *, registry: str, what: str) -> errors.RegistryError:
    """The Conveyor error for an httpx exception (the caller chains it with ``from``)."""
    reason = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in reason or "SSL" in reason:
        return errors.RegistryUnavailable(
            f"{what}: TLS with {registry} failed ({reason}); configure tls.ca_file with the "
            "registry's CA, or tls.insecure for a test registry",
            registry=registry,
        )
    if isinstance(exc, httpx.TimeoutException):
        return errors.RegistryUnavailable(f"{what}: {registry} timed out", registry=registry)
    if isinstance(exc, httpx.TransportError):
        return errors.RegistryUnavailable(
            f"{what}: {registry} unreachable ({reason})", registry=registry
        )
    return errors.RegistryError(f"{what}: {registry}: {reason}", registry=registry)
