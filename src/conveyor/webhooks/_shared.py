"""What every sender module shares: size cap, content type, auth modes, typed JSON access.

Nothing here echoes a header value, the secret or the body in an error: the
messages name the header or the dotted field path and what would be valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

from conveyor.core import events
from conveyor.core.credentials import Secret
from conveyor.core.errors import InvalidDigest, InvalidImageRef, WebhookRejected
from conveyor.core.events import EventKind, InboundDelivery, RegistryEvent, ScanSummary
from conveyor.core.images import NAME_RE, TAG_RE, Digest, ImageRef

# Registries send a few KiB (GitHub's package events are the largest, ~10 KiB); 1 MiB
# leaves ample room while a flood of big bodies stays cheap to refuse (issue 6).
MAX_BODY_BYTES = 1024 * 1024

# What senders put in Content-Type: plain JSON (most), distribution 2.x (v1) and
# 3.x (v2) envelopes, and CloudEvents structured mode (Harbor's CloudEvents format).
JSON_CONTENT_TYPES = frozenset(
    {
        "application/json",
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/cloudevents+json",
    }
)

# oidc is checked by conveyor.webhooks.oidc (a signed token, no shared secret).
AUTH_MODES = ("bearer", "header", "hmac-sha256", "basic", "oidc")
GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
# Echoed content types are sender-chosen text: keep them short in messages.
_ECHO_LIMIT = 80


def check_size(length: int, *, limit: int = MAX_BODY_BYTES) -> None:
    """Refuse a body over the limit (413); call it on Content-Length and while reading."""
    if length > limit:
        raise WebhookRejected(
            f"request body of {length} bytes is over the limit of {limit} bytes", status=413
        )


def check_content_type(delivery: InboundDelivery) -> None:
    """Refuse a delivery whose Content-Type is not JSON (400), naming what was sent."""
    raw = delivery.headers.get("content-type")
    expected = ", ".join(sorted(JSON_CONTENT_TYPES))
    if raw is None or not raw.strip():
        raise WebhookRejected(f"missing Content-Type header; expected one of {expected}")
    media_type = raw.split(";", 1)[0].strip().lower()
    if media_type not in JSON_CONTENT_TYPES:
        raise WebhookRejected(
            f"Content-Type '{shown(media_type)}' is not JSON; expected one of {expected}"
        )


# --- authentication ------------------------------------------------------------------


def verify_auth(
    delivery: InboundDelivery, secret: Secret, *, auth: str, header: str | None
) -> None:
    """Check the credential for one auth mode in constant time; raises WebhookRejected (401).

    ``oidc`` is not checked here but by ``receive`` with the endpoint's
    ``OidcVerifier``: without one it is refused.
    """
    if auth == "oidc":
        raise WebhookRejected(
            "auth 'oidc' needs the endpoint's audience and signing keys, which this check "
            "was not given; refusing",
            status=401,
        )
    expected = secret.reveal()
    if not expected:
        raise WebhookRejected("the endpoint has no secret configured; refusing", status=401)
    match auth:
        case "bearer":
            _check_bearer(delivery, expected)
        case "header":
            if not header:
                raise WebhookRejected("auth 'header' needs a header name; refusing", status=401)
            given = _required_header(delivery, header)
            _compare(given, expected, what=f"header {header}")
        case "hmac-sha256":
            _check_hmac(delivery, expected, header=header or GITHUB_SIGNATURE_HEADER)
        case "basic":
            _check_basic(delivery, expected)
        case _:
            modes = ", ".join(AUTH_MODES)
            raise WebhookRejected(f"auth mode is not one of {modes}; refusing", status=401)


def _required_header(delivery: InboundDelivery, name: str) -> str:
    value = delivery.headers.get(name)
    if value is None:
        raise WebhookRejected(f"missing {name} header", status=401)
    return value


def _credentials(delivery: InboundDelivery, scheme: str) -> str:
    value = _required_header(delivery, "Authorization")
    given_scheme, _, credentials = value.strip().partition(" ")
    if given_scheme.lower() != scheme.lower() or not credentials.strip():
        raise WebhookRejected(f"Authorization header is not '{scheme} <credentials>'", status=401)
    return credentials.strip()


def bearer_credentials(delivery: InboundDelivery) -> str:
    """What follows ``Bearer`` in the Authorization header (401 when missing or another scheme)."""
    return _credentials(delivery, "Bearer")


def _check_bearer(delivery: InboundDelivery, expected: str) -> None:
    _compare(bearer_credentials(delivery), expected, what="Authorization bearer token")


def _check_basic(delivery: InboundDelivery, expected: str) -> None:
    encoded = _credentials(delivery, "Basic")
    try:
        decoded = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise WebhookRejected(
            "Authorization Basic credentials are not base64", status=401
        ) from None
    _, colon, password = decoded.partition(b":")
    if not colon:
        raise WebhookRejected("Authorization Basic credentials are not user:password", status=401)
    if not hmac.compare_digest(password, _utf8(expected)):
        raise WebhookRejected("Authorization Basic password does not match", status=401)


def _check_hmac(delivery: InboundDelivery, expected: str, *, header: str) -> None:
    # GitHub: "sha256=" + hex HMAC-SHA256(secret, raw body), docs.github.com
    # "Validating webhook deliveries". Compare the whole header value.
    given = _required_header(delivery, header)
    digest = hmac.new(_utf8(expected), delivery.body, hashlib.sha256).hexdigest()
    _compare(given.strip(), f"sha256={digest}", what=f"{header} signature")


def _compare(given: str, expected: str, *, what: str) -> None:
    # compare_digest refuses non-ASCII str, so compare bytes.
    if not hmac.compare_digest(_utf8(given), _utf8(expected)):
        raise WebhookRejected(f"{what} does not match", status=401)


def _utf8(text: str) -> bytes:
    # surrogatepass: a secret read from the environment may hold surrogate escapes
    # (undecodable bytes), and header text may hold anything; neither may raise here.
    return text.encode("utf-8", "surrogatepass")


# --- typed JSON access ---------------------------------------------------------------


def load_json(delivery: InboundDelivery, *, sender: str) -> Fields:
    """The body as a JSON object, after the size and content-type checks (400 otherwise)."""
    check_size(len(delivery.body))
    check_content_type(delivery)
    return Fields(decode_json(delivery.body, sender=sender, what="body"), path="", sender=sender)


def decode_json(raw: bytes, *, sender: str, what: str) -> object:
    """Decode JSON bytes; every failure (encoding, syntax, depth, huge numbers) is a 400."""
    try:
        # What json.loads does for bytes, with one decoder built once instead of per call.
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise WebhookRejected(f"{sender}: {what} is not valid JSON{where}") from None


def _refuse_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON (RFC 8259 §6); Python accepts them by default.
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)

_T = TypeVar("_T")

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class Fields:
    """A JSON object and where it sits in the payload, so errors name the dotted field."""

    __slots__ = ("_data", "path", "sender")

    def __init__(self, data: object, *, path: str, sender: str) -> None:
        self.path = path
        self.sender = sender
        if not isinstance(data, dict):
            self.fail(path or "body", f"must be an object, not {_type_name(data)}")
        self._data: dict[str, object] = data

    def child(self, key: str) -> str:
        """The dotted path of one of this object's keys (sender-chosen keys shortened)."""
        name = shown(key)
        return f"{self.path}.{name}" if self.path else name

    def fail(self, path: str, problem: str) -> NoReturn:
        """Raise the 400 for one field."""
        raise WebhookRejected(f"{self.sender}: field '{path}' {problem}")

    def has(self, key: str) -> bool:
        """Whether the key is present and not null."""
        return self._data.get(key) is not None

    def _value(self, key: str, kind: type[_T], wanted: str) -> _T | None:
        value = self._data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) and kind is not bool:
            self.fail(self.child(key), f"must be {wanted}, not a boolean")
        if not isinstance(value, kind):
            self.fail(self.child(key), f"must be {wanted}, not {_type_name(value)}")
        return value

    def _required(self, key: str, kind: type[_T], wanted: str) -> _T:
        value = self._value(key, kind, wanted)
        if value is None:
            self.fail(self.child(key), "is missing")
        return value

    def obj(self, key: str) -> Fields:
        """A required nested object."""
        value = self._required(key, dict, "an object")
        return Fields(value, path=self.child(key), sender=self.sender)

    def opt_obj(self, key: str) -> Fields | None:
        """An optional nested object."""
        value = self._value(key, dict, "an object")
        return None if value is None else Fields(value, path=self.child(key), sender=self.sender)

    def text(self, key: str) -> str:
        """A required non-empty string."""
        value = self._required(key, str, "a string")
        if not value.strip():
            self.fail(self.child(key), "is empty")
        return value

    def opt_text(self, key: str) -> str | None:
        """An optional string; empty counts as absent."""
        return self._value(key, str, "a string") or None

    def opt_number(self, key: str) -> float | None:
        """An optional number (integer or not)."""
        value = self._data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.child(key), f"must be a number, not {_type_name(value)}")
        return value

    def objects(self, key: str, *, required: bool = True) -> list[Fields]:
        """An array of objects (absent counts as empty when not required)."""
        items = (
            self._required(key, list, "an array")
            if required
            else self._value(key, list, "an array")
        )
        return [
            Fields(item, path=f"{self.child(key)}[{index}]", sender=self.sender)
            for index, item in enumerate(items or [])
        ]

    def texts(self, key: str) -> list[str]:
        """An optional array of strings (absent counts as empty)."""
        result: list[str] = []
        for index, item in enumerate(self._value(key, list, "an array") or []):
            if not isinstance(item, str):
                path = f"{self.child(key)}[{index}]"
                self.fail(path, f"must be a string, not {_type_name(item)}")
            result.append(item)
        return result

    def items(self) -> list[tuple[str, object]]:
        """The object's own keys and values."""
        return list(self._data.items())

    # Typed values parsed from strings, each naming its field on failure.

    def digest(self, key: str, *, required: bool = True) -> Digest | None:
        """A ``sha256:<hex>`` digest."""
        text = self.text(key) if required else self.opt_text(key)
        return None if text is None else self.to_digest(text, self.child(key))

    def to_digest(self, text: str, path: str) -> Digest:
        """Parse a digest found at ``path``."""
        try:
            return Digest.parse(text)
        except InvalidDigest:
            self.fail(path, "is not a digest; expected sha256:<64 lowercase hex digits>")

    def repository(self, key: str) -> str:
        """A required repository name (distribution-spec grammar)."""
        return self.to_repository(self.text(key), self.child(key))

    def to_repository(self, text: str, path: str) -> str:
        """Check a repository name found at ``path``."""
        if len(text) > 255 or not NAME_RE.match(text):
            self.fail(path, "is not a repository name (lowercase components separated by '/')")
        return text

    def tag(self, key: str) -> str | None:
        """An optional tag (distribution-spec grammar); empty counts as absent."""
        text = self.opt_text(key)
        return None if text is None else self.to_tag(text, self.child(key))

    def to_tag(self, text: str, path: str) -> str:
        """Check a tag found at ``path``."""
        if not TAG_RE.match(text):
            self.fail(path, "is not a tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{0,127})")
        return text

    def image_ref(self, key: str) -> ImageRef | None:
        """An optional full image reference (``host/name[:tag][@digest]``)."""
        text = self.opt_text(key)
        if text is None:
            return None
        try:
            return ImageRef.parse(text)
        except (InvalidImageRef, InvalidDigest):
            self.fail(self.child(key), "is not an image reference (host/name:tag or @digest)")

    def rfc3339(self, key: str) -> datetime | None:
        """An optional RFC 3339 time (nanoseconds allowed); naive times are taken as UTC."""
        text = self.opt_text(key)
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(_trim_fraction(text.strip()))
        except ValueError:
            self.fail(self.child(key), "is not an RFC 3339 time")
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def unix_seconds(self, key: str) -> datetime | None:
        """An optional time in unix seconds."""
        value = self.opt_number(key)
        if value is None:
            return None
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, ValueError, OSError):
            self.fail(self.child(key), "is not a time in unix seconds")


def _trim_fraction(text: str) -> str:
    # Go writes nanoseconds (9 digits); datetime keeps microseconds.
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}" if digits else text


def shown(text: str) -> str:
    """Sender-chosen text as shown in a message: at most 80 characters, printable ASCII."""
    # Key names and key ids come from the sender (severity names, report types,
    # a token's kid): keep messages short and printable whatever was sent, so a
    # newline or a terminal escape cannot forge or garble a log line.
    if len(text) <= _ECHO_LIMIT and text.isascii() and text.isprintable():
        return text  # the usual case, unchanged by the escaping below
    cut = text if len(text) <= _ECHO_LIMIT else f"{text[:_ECHO_LIMIT]}…"
    return cut.encode("unicode_escape").decode("ascii")


def _type_name(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


# --- building events -----------------------------------------------------------------


def body_id(body: bytes) -> str:
    """A delivery id for senders that send none: the digest of the exact body bytes."""
    return f"body:{Digest.of(body)}"


def make_event(
    kind: EventKind,
    *,
    sender: str,
    delivery_id: str,
    registry: str | None,
    repository: str,
    tag: str | None,
    digest: Digest | None,
    occurred_at: datetime | None,
    media_type: str | None = None,
    scan: ScanSummary | None = None,
) -> RegistryEvent:
    """A RegistryEvent with ``needs_resolution`` decided by the one core rule."""
    return RegistryEvent(
        kind=kind,
        registry=registry,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type,
        scan=scan,
        delivery_id=delivery_id,
        occurred_at=occurred_at,
        sender=sender,
        needs_resolution=events.needs_resolution(kind, tag=tag, digest=digest),
    )


def severity_counts(counts: Fields) -> dict[str, int]:
    """Severity name to count, names lowercased; refuses non-integer or negative counts."""
    result: dict[str, int] = {}
    for name, value in counts.items():
        path = counts.child(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            counts.fail(path, "must be a non-negative integer")
        result[name.lower()] = result.get(name.lower(), 0) + value
    return result


def delivery_ids(base: str, count: int) -> list[str]:
    """One id per event of a delivery: the sender's id alone, or ``id#n`` when it reports many."""
    return [base] if count == 1 else [f"{base}#{index}" for index in range(count)]


def host_of(reference: str | None) -> str | None:
    """The registry host at the start of ``host/name…`` text (a URL's scheme is dropped)."""
    if not reference:
        return None
    _, sep, rest = reference.partition("://")
    host = (rest if sep else reference).split("/", 1)[0].strip()
    return host or None


class ConfiguredAuth:
    """``verify`` for senders authenticated by the endpoint's configured mode."""

    def verify(
        self, delivery: InboundDelivery, secret: Secret, *, auth: str, header: str | None
    ) -> None:
        """Check the credential for the endpoint's auth mode; raises WebhookRejected (401)."""
        verify_auth(delivery, secret, auth=auth, header=header)
