"""API tokens: only a SHA-256 hash is stored; the token itself is shown once, at creation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.store.tables import ApiToken

# 32 random bytes: beyond guessing; the prefix makes leaked tokens easy to grep for.
TOKEN_BYTES = 32
TOKEN_PREFIX = "cvy_"


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A token row and the one-time plain token to hand to its owner."""

    row: ApiToken
    token: str

    def __repr__(self) -> str:
        return f"IssuedToken(row={self.row!r}, token='***')"


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token (tokens are random, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, name: str, *, role: str, created_by: str, now: datetime
) -> IssuedToken:
    """Issue a new token; the plain value is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiToken(
        name=name,
        role=role,
        token_hash=hash_token(token),
        created_by=created_by,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return IssuedToken(row=row, token=token)


def authenticate(session: Session, token: str, *, now: datetime) -> ApiToken | None:
    """The live token row matching `token` (updating last_used_at), or None."""
    row = session.scalars(
        sa.select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    ).first()
    if row is not None:
        row.last_used_at = now
        session.flush()
    return row


def revoke_token(session: Session, name: str, *, now: datetime) -> bool:
    """Revoke a token by name; False when no live token has that name."""
    result = session.execute(
        sa.update(ApiToken)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token row (hashes only), oldest first."""
    return list(session.scalars(sa.select(ApiToken).order_by(ApiToken.id)))
