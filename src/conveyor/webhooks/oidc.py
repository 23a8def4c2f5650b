"""``auth: oidc``: an OpenID Connect ID token in ``Authorization: Bearer <JWT>``.

Pub/Sub push subscriptions (how Google Artifact Registry notifications arrive,
``format: gar``) sign each request with a Google-issued token
(cloud.google.com/pubsub/docs/authenticate-push-subscriptions). This module
checks one, purely: the signing keys come in through ``SigningKeys`` (fetched
and cached elsewhere, by ``conveyor.jwks``), and the time is the delivery's
``received_at``, so nothing here does I/O or reads a clock.

Checked in this order, each failure a ``WebhookRejected`` (401) naming what
failed, never the token:

1. ``Authorization: Bearer <JWT>`` is there and is a JWT;
2. its header says ``alg: RS256`` (``none``, ``HS256`` and the rest are refused
   before any key is touched) and names a key id (``kid``);
3. the key set has that ``kid`` (else ``UnknownSigningKey``, on which the server
   refetches the set once and verifies again: that is how rotated keys arrive);
4. the RS256 signature verifies with that key (PyJWT);
5. ``iss`` is one of the accepted issuers and ``aud`` the configured audience;
6. ``exp``, ``iat`` (and ``nbf`` if present) against ``received_at``, with
   ``LEEWAY`` for clock skew;
7. when an ``email`` is configured: the token's ``email`` is it and
   ``email_verified`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt

from conveyor.core.errors import WebhookRejected
from conveyor.core.events import InboundDelivery
from conveyor.webhooks import _shared

# Clock skew allowed between Google and this server for exp, iat and nbf.
LEEWAY = timedelta(seconds=60)
ALGORITHM = "RS256"  # what Google signs ID tokens with; the only one accepted
_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat"]


class SigningKeys(Protocol):
    """The public keys tokens may be signed with, by key id; lookups do no I/O."""

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id, or None when the set (as held now) has none."""
        ...

    def describe(self) -> str:
        """Where the keys come from, and why the last fetch failed if it did (for messages)."""
        ...


class UnknownSigningKey(WebhookRejected):
    """The token names a key id the set does not have (yet): a refetch may find it."""

    def __init__(self, message: str, *, kid: str) -> None:
        super().__init__(message, status=401)
        self.kid = kid


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcPolicy:
    """What an endpoint accepts: the audience, the issuers, optionally one service account."""

    audience: str
    issuers: tuple[str, ...]
    email: str | None = None
    leeway: timedelta = LEEWAY


@dataclass(frozen=True, slots=True)
class OidcVerifier:
    """Checks a delivery's bearer token against a policy and a key set."""

    policy: OidcPolicy
    keys: SigningKeys

    def verify(self, delivery: InboundDelivery) -> None:
        """Raises WebhookRejected (401) unless the token is valid for the policy."""
        token = _shared.bearer_credentials(delivery)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _reject("Authorization bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm != ALGORITHM:
            shown = _shared.shown(algorithm) if isinstance(algorithm, str) else "none given"
            raise _reject(f"OIDC token algorithm '{shown}' is not {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _reject("OIDC token header names no signing key ('kid')")
        key = self.keys.get(kid)
        if key is None:
            raise UnknownSigningKey(
                f"OIDC token is signed with key '{_shared.shown(kid)}', which is not among "
                f"the signing keys from {self.keys.describe()}",
                kid=kid,
            )
        claims = self._decode(token, key, _shared.shown(kid))
        self._check_times(claims, delivery.received_at)
        self._check_email(claims)

    def _decode(self, token: str, key: jwt.PyJWK, kid: str) -> dict[str, Any]:
        policy = self.policy
        try:
            # exp/iat/nbf are checked below against received_at, not PyJWT's clock.
            return jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                audience=policy.audience,
                issuer=policy.issuers,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": _REQUIRED_CLAIMS,
                },
            )
        except jwt.InvalidSignatureError:
            raise _reject(f"OIDC token signature does not verify with key '{kid}'") from None
        except jwt.MissingRequiredClaimError as error:
            raise _reject(f"OIDC token has no '{error.claim}' claim") from None
        except jwt.InvalidIssuerError:
            raise _reject(f"OIDC token issuer is not {_either(policy.issuers)}") from None
        except jwt.InvalidAudienceError:
            raise _reject(f"OIDC token audience is not '{policy.audience}'") from None
        except (jwt.InvalidKeyError, jwt.InvalidAlgorithmError):
            raise _reject(f"signing key '{kid}' is not an RSA key for {ALGORITHM}") from None
        except jwt.PyJWTError:
            raise _reject("OIDC token is not a valid JWT") from None

    def _check_times(self, claims: dict[str, Any], now: datetime) -> None:
        leeway = self.policy.leeway
        expires = _time(claims, "exp")
        if now > expires + leeway:
            raise _reject(
                f"OIDC token expired at {expires.isoformat()} "
                f"(received {now.isoformat()}, leeway {_seconds(leeway)})"
            )
        issued = _time(claims, "iat")
        if issued > now + leeway:
            raise _reject(
                f"OIDC token is issued in the future ({issued.isoformat()}; received "
                f"{now.isoformat()}, leeway {_seconds(leeway)})"
            )
        if "nbf" in claims:
            not_before = _time(claims, "nbf")
            if not_before > now + leeway:
                raise _reject(f"OIDC token is not valid before {not_before.isoformat()}")

    def _check_email(self, claims: dict[str, Any]) -> None:
        wanted = self.policy.email
        if wanted is None:
            return
        if claims.get("email") != wanted:
            raise _reject(f"OIDC token's email is not the configured service account {wanted}")
        if claims.get("email_verified") is not True:
            raise _reject("OIDC token's email is not verified (email_verified is not true)")


def _time(claims: dict[str, Any], name: str) -> datetime:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _reject(f"OIDC token claim '{name}' is not a time in unix seconds")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, ValueError, OSError):
        raise _reject(f"OIDC token claim '{name}' is not a time in unix seconds") from None


def _either(values: tuple[str, ...]) -> str:
    return " or ".join(f"'{value}'" for value in values)


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():g} s"


def _reject(message: str) -> WebhookRejected:
    return WebhookRejected(message, status=401)
