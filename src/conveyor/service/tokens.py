"""API tokens: created once and shown once; only their SHA-256 is stored.

Roles are ordered: viewer < operator < approver < admin. Each route names the
least role it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from sqlalchemy import exc

from conveyor.core.errors import AccessDenied, Conflict, InvalidInput
from conveyor.service.context import Services
from conveyor.store import audit
from conveyor.store import tokens as store_tokens
from conveyor.store.database import unit_of_work


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


def create(services: Services, *, name: str, role: str, created_by: str) -> str:
    """Create a token and return it (the only time it is visible)."""
    try:
        parsed = Role[role.upper()]
    except KeyError:
        valid = ", ".join(r.name.lower() for r in Role)
        raise InvalidInput(f"--role: '{role}' is not a role; valid: {valid}") from None
    if not name.strip():
        raise InvalidInput("--name: give the token a name (it is the API user's identity)")
    now = services.clock()
    try:
        with unit_of_work(services.engine) as session:
            issued = store_tokens.create_token(
                session, name, role=parsed.name.lower(), created_by=created_by, now=now
            )
            audit.record_audit(
                session,
                identity=created_by,
                action="token.create",
                target=name,
                details={"role": parsed.name.lower()},
                now=now,
            )
    except exc.IntegrityError:
        raise Conflict(f"a token named '{name}' already exists; pick another --name") from None
    return issued.token


def authenticate(services: Services, authorization: str | None) -> Identity:
    """The identity behind an ``Authorization: Bearer <token>`` header; raises 401."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AccessDenied("missing bearer token: send Authorization: Bearer <token>", status=401)
    with unit_of_work(services.engine) as session:
        row = store_tokens.authenticate(session, authorization[7:].strip(), now=services.clock())
        if row is None:
            raise AccessDenied("invalid or revoked token", status=401)
        return Identity(user=row.name, role=Role[row.role.upper()])


def require(identity: Identity, role: Role) -> None:
    """Refuse (403) a caller whose role is below ``role``."""
    if identity.role < role:
        raise AccessDenied(
            f"token '{identity.user}' has role {identity.role.name.lower()}; "
            f"this needs {role.name.lower()} or higher",
            status=403,
        )
