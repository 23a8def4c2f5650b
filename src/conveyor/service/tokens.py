"""API tokens: created once and shown once; only their SHA-256 is stored.

Roles are ordered: viewer < operator < approver < admin. Each route names the
least role it needs.
"""

from __future__ import annotations

import hashlib
import secrets as token_source
from dataclasses import dataclass
from enum import IntEnum

import sqlalchemy as sa
from sqlalchemy import exc

from conveyor.core.errors import AccessDenied, Conflict, InvalidInput
from conveyor.service import audit
from conveyor.service.context import Services
from conveyor.store import tables
from conveyor.store.database import unit_of_work

TOKEN_PREFIX = "cvy_"


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Who is calling the API: the token's name is the user."""

    user: str
    role: Role


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(services: Services, *, name: str, role: str, created_by: str) -> str:
    """Create a token and return it (the only time it is visible)."""
    try:
        parsed = Role[role.upper()]
    except KeyError:
        valid = ", ".join(r.name.lower() for r in Role)
        raise InvalidInput(f"--role: '{role}' is not a role; valid: {valid}") from None
    if not name.strip():
        raise InvalidInput("--name: give the token a name (it is the API user's identity)")
    token = TOKEN_PREFIX + token_source.token_urlsafe(32)
    now = services.clock()
    try:
        with unit_of_work(services.engine) as session:
            session.add(
                tables.ApiToken(
                    name=name,
                    role=parsed.name.lower(),
                    token_hash=_hash(token),
                    created_by=created_by,
                    created_at=now,
                )
            )
            audit.record(
                session,
                identity=created_by,
                action="token.create",
                target=name,
                details={"role": parsed.name.lower()},
                at=now,
            )
    except exc.IntegrityError:
        raise Conflict(f"a token named '{name}' already exists; pick another --name") from None
    return token


def authenticate(services: Services, authorization: str | None) -> Identity:
    """The identity behind an ``Authorization: Bearer <token>`` header; raises 401."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AccessDenied("missing bearer token: send Authorization: Bearer <token>", status=401)
    token = authorization[7:].strip()
    with unit_of_work(services.engine) as session:
        row = session.scalars(
            sa.select(tables.ApiToken).where(tables.ApiToken.token_hash == _hash(token))
        ).first()
        if row is None or row.revoked_at is not None:
            raise AccessDenied("invalid or revoked token", status=401)
        row.last_used_at = services.clock()
        return Identity(user=row.name, role=Role[row.role.upper()])


def require(identity: Identity, role: Role) -> None:
    """Refuse (403) a caller whose role is below ``role``."""
    if identity.role < role:
        raise AccessDenied(
            f"token '{identity.user}' has role {identity.role.name.lower()}; "
            f"this needs {role.name.lower()} or higher",
            status=403,
        )
