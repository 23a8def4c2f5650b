"""Every failure Conveyor can report, on one screen.

```
ConveyorError
├── InvalidInput              bad user input; carries Location(s)
│   ├── InvalidDefinition     config files: one or more located problems
│   ├── InvalidImageRef       an image reference that does not parse
│   ├── InvalidDigest         a digest that is not algorithm:hex
│   ├── InvalidVersionPolicy  a filter or policy that cannot be used
│   ├── InvalidDatabaseUrl    CONVEYOR_DATABASE_URL / --database-url is not usable
│   └── TagRefused            a requested tag that the source's filter drops
├── NotFound                  (kind, name)
├── Conflict                  stale version, run already started, ...
├── PromotionRefused          carries the Decision's reasons
├── WebhookRejected           401 / 400 / 413; never echoes secret or body
├── AccessDenied              401 / 403 on the API (token missing, invalid or too weak)
├── StepFailed                terminal business failure of a step
└── IntegrationError          raised by adapters; `retryable` says whether to try again
    ├── RegistryError                 (carries the registry host)
    │   ├── RegistryUnauthorized      401: credentials missing or rejected       terminal
    │   ├── RegistryForbidden         403: authenticated, not allowed            terminal
    │   ├── RepositoryUnknown         NAME_UNKNOWN                               terminal
    │   ├── ManifestUnknown           MANIFEST_UNKNOWN / 404 on a manifest       terminal
    │   ├── DigestMismatch            body hash differs from the digest asked    terminal
    │   ├── UnsupportedMediaType      schema1, or a type Conveyor cannot copy    terminal
    │   ├── RegistryRequestRejected   any other 4xx (bad request, too large...)  terminal
    │   ├── CredentialsUnavailable    docker config / credential helper failed   terminal
    │   └── RegistryUnavailable       429, 5xx, timeout, connection refused      retryable
    ├── ScannerError
    ├── DeployError
    └── DatabaseUnavailable   the state database cannot be reached or opened
```

The class docstring is the default message; structured facts live on
attributes and ``__str__`` builds the message from them. Retryable or
terminal is a property of the class (``retryable``), never of the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where a problem is: a file position and a dotted field path, or a request field."""

    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    field: str = ""

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
        if where and self.field:
            return f"{where}: {self.field}"
        return where or self.field


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One located complaint about user input."""

    location: Location
    message: str

    def __str__(self) -> str:
        where = str(self.location)
        return f"{where}: {self.message}" if where else self.message


class ConveyorError(Exception):
    """Conveyor failed."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or type(self).__name__).strip()
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class InvalidInput(ConveyorError):
    """The input is not valid."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(location=Location(), message=problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InvalidDefinition(InvalidInput):
    """The configuration is not valid."""


class InvalidImageRef(InvalidInput):
    """Not an image reference; write registry/repository[:tag][@sha256:<64 hex>]."""


class InvalidDigest(InvalidInput):
    """Not a digest; write sha256:<64 lowercase hex digits>."""


class InvalidVersionPolicy(InvalidInput):
    """The version filter or policy cannot be used."""


class InvalidDatabaseUrl(InvalidInput):
    """The database URL is not valid; set CONVEYOR_DATABASE_URL or --database-url to
    sqlite:///path/to/state.db or postgresql://user:password@host:5432/dbname."""


class TagRefused(InvalidInput):
    """The requested tag is refused by the source's version filter."""


class NotFound(ConveyorError):
    """Not found."""

    def __init__(self, kind: str, name: str, *, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        text = f"{kind} '{name}' not found"
        super().__init__(f"{text}; {hint}" if hint else text)


class Conflict(ConveyorError):
    """The request conflicts with the current state."""


class PromotionRefused(ConveyorError):
    """The promotion is refused."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = tuple(reasons)
        super().__init__("; ".join(self.reasons) or None)


class WebhookRejected(ConveyorError):
    """The webhook delivery was rejected."""

    def __init__(self, message: str | None = None, *, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class AccessDenied(ConveyorError):
    """Access denied: send a valid API token with a role allowed to do this."""

    def __init__(self, message: str | None = None, *, status: int = 401) -> None:
        self.status = status
        super().__init__(message)


class StepFailed(ConveyorError):
    """The step failed."""


class IntegrationError(ConveyorError):
    """An outside system failed."""

    retryable: ClassVar[bool] = True


class RegistryError(IntegrationError):
    """The registry failed."""

    def __init__(
        self, message: str | None = None, *, registry: str = "", retry_after: float | None = None
    ) -> None:
        self.registry = registry
        # Seconds the registry asked to wait (Retry-After on a 429 or 503), if it said.
        self.retry_after = retry_after
        super().__init__(message)


class RegistryUnauthorized(RegistryError):
    """The registry rejected the credentials (401); check the username and password for it."""

    retryable: ClassVar[bool] = False


class RegistryForbidden(RegistryError):
    """The registry refused the operation for these credentials (403)."""

    retryable: ClassVar[bool] = False


class RepositoryUnknown(RegistryError):
    """The repository does not exist in the registry."""

    retryable: ClassVar[bool] = False


class ManifestUnknown(RegistryError):
    """No manifest with this tag or digest exists in the repository."""

    retryable: ClassVar[bool] = False


class DigestMismatch(RegistryError):
    """The content the registry sent does not hash to the digest asked for; refusing it."""

    retryable: ClassVar[bool] = False


class UnsupportedMediaType(RegistryError):
    """The registry returned a media type Conveyor does not handle (e.g. Docker schema1)."""

    retryable: ClassVar[bool] = False


class RegistryRequestRejected(RegistryError):
    """The registry rejected the request (4xx)."""

    retryable: ClassVar[bool] = False


class CredentialsUnavailable(RegistryError):
    """The registry credentials could not be read (docker config.json or credential helper)."""

    retryable: ClassVar[bool] = False


class RegistryUnavailable(RegistryError):
    """The registry is unavailable (429, 5xx, timeout or connection error); try again later."""

    retryable: ClassVar[bool] = True


class ScannerError(IntegrationError):
    """The scanner failed."""


class DeployError(IntegrationError):
    """The deploy failed."""


class DatabaseUnavailable(IntegrationError):
    """The state database is unavailable; check CONVEYOR_DATABASE_URL or --database-url."""
