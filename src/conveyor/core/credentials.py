"""Credentials as values that never print themselves."""

from __future__ import annotations

from dataclasses import dataclass

MASK = "**********"


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret string; ``str`` and ``repr`` are masked, ``reveal()`` gives the value."""

    _value: str

    def reveal(self) -> str:
        """The secret itself: call only where it is sent, never where it is shown."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A username and password (or token) for one registry.

    ``identity_token`` is an OAuth2 refresh token (docker's ``identitytoken``
    after ``docker login`` to a registry whose token service issued one); the
    password is then usually empty.
    """

    username: str
    password: Secret
    identity_token: Secret | None = None
