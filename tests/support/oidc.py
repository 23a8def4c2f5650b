"""Stand-ins for Google's OIDC signing keys and the tokens Pub/Sub push sends.

Google signs a push subscription's ID token with RS256 keys it publishes as a
JWKS at https://www.googleapis.com/oauth2/v3/certs. The tests cannot use those
keys (they sign nothing for us), so they generate RSA keys of the same kind
here, publish them in a JWKS of the same shape, and sign tokens with the
claims Pub/Sub sends (cloud.google.com/pubsub/docs/authenticate-push-subscriptions:
iss, aud, azp, sub, email, email_verified, iat, exp).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "https://conveyor.example.com/hooks/gar"
PUSHER = "gar-pusher@my-project.iam.gserviceaccount.com"
GOOGLE_ISSUER = "https://accounts.google.com"


@dataclass(frozen=True)
class SigningKey:
    """One RSA key pair standing in for a Google signing key, with its key id."""

    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWKS entry, as Google publishes it."""
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**entry, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, **header: Any) -> str:
        """A token signed RS256 with this key; ``kid`` defaults to this key's."""
        return jwt.encode(
            claims, self.private, algorithm="RS256", headers={"kid": kid or self.kid, **header}
        )


@functools.cache
def signing_key(kid: str) -> SigningKey:
    """A fresh 2048-bit RSA key (made once per kid per test session)."""
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def jwks(*keys: SigningKey) -> bytes:
    """A JWKS document publishing the keys."""
    return json.dumps({"keys": [key.jwk() for key in keys]}).encode()


def claims(
    now: datetime,
    *,
    audience: str = AUDIENCE,
    email: str = PUSHER,
    issuer: str = GOOGLE_ISSUER,
    lifetime: timedelta = timedelta(hours=1),
    **extra: Any,
) -> dict[str, Any]:
    """The claims of a Pub/Sub push token issued at ``now`` (Google's tokens last an hour)."""
    issued = int(now.timestamp())
    return {
        "aud": audience,
        "azp": "104176025330666878453",
        "email": email,
        "email_verified": True,
        "exp": issued + int(lifetime.total_seconds()),
        "iat": issued,
        "iss": issuer,
        "sub": "104176025330666878453",
        **extra,
    }


def unsigned(payload: dict[str, Any], header: dict[str, Any], secret: bytes | None = None) -> str:
    """A token with a hand-written header: ``alg: none`` (no signature) or HS256 with ``secret``.

    PyJWT refuses to make these (it will not use a PEM public key as an HMAC
    secret), which is the point: an attacker writes them by hand.
    """
    signing_input = (
        f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}"
    )
    signature = b""
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwksServer:
    """Google's certs endpoint, stood in for on a free 127.0.0.1 port (``with`` starts it).

    ``document`` is what ``GET /certs`` answers, with ``cache_control``;
    ``hits`` counts the GETs; clear ``gate`` to hold answers until it is set;
    ``status`` other than 200 answers that status with no keys.
    """

    def __init__(self, *keys: SigningKey, cache_control: str = "public, max-age=3600") -> None:
        self.document = jwks(*keys)
        self.cache_control = cache_control
        self.status = 200
        self.hits = 0
        self.gate = threading.Event()
        self.gate.set()
        self.url = ""
        self._serving: contextlib.ExitStack | None = None

    def publish(self, *keys: SigningKey) -> None:
        self.document = jwks(*keys)

    def __enter__(self) -> JwksServer:
        from tests.support.registry import QuietHandler, serve_http

        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                server.hits += 1
                server.gate.wait(30)
                if self.path != "/certs":
                    self.reply(404)
                elif server.status != 200:
                    self.reply(server.status, b"unavailable")
                else:
                    headers = {"Content-Type": "application/json"}
                    headers["Cache-Control"] = server.cache_control
                    self.reply(200, server.document, headers)

        self._serving = contextlib.ExitStack()
        self.url = self._serving.enter_context(serve_http(Handler)) + "/certs"
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        assert self._serving is not None
        self._serving.close()
