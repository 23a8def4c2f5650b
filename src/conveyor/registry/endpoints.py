"""How to reach one registry: address, credentials, TLS."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from conveyor.core.credentials import Credentials
from conveyor.core.errors import InvalidInput
from conveyor.core.images import DEFAULT_REGISTRY
from conveyor.registry.auth import TOKEN_FLOWS, TokenFlow

# Docker Hub's API lives on another host than the one in image references.
_WELL_KNOWN_URLS = {DEFAULT_REGISTRY: "https://registry-1.docker.io"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEndpoint:
    """One registry as Conveyor reaches it.

    ``host`` is what appears in image references (``127.0.0.1:5000``); ``url``
    is the base URL requests go to (it may be an internal address). TLS is
    verified unless ``insecure`` is set, which also allows plain ``http``.
    ``token_flow`` says how bearer tokens are asked for (``auth.TokenFlow``).
    """

    host: str
    url: str
    credentials: Credentials | None = None
    ca_file: str | None = None
    insecure: bool = False
    token_flow: TokenFlow = "auto"

    def __post_init__(self) -> None:
        if self.token_flow not in TOKEN_FLOWS:
            raise InvalidInput(
                f"registry {self.host}: token_flow '{self.token_flow}' is not one of "
                f"{', '.join(TOKEN_FLOWS)}"
            )
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(f"registry url '{self.url}' is not valid; write https://host[:port]")
        if parts.scheme == "http" and not self.insecure:
            raise InvalidInput(
                f"registry url '{self.url}' is plain http; use https, or mark the registry "
                "insecure (tls.insecure: true / --insecure-registry) for a loopback registry"
            )
        object.__setattr__(self, "url", self.url.rstrip("/"))

    @classmethod
    def for_host(
        cls,
        host: str,
        *,
        credentials: Credentials | None = None,
        insecure: bool = False,
        ca_file: str | None = None,
    ) -> RegistryEndpoint:
        """The endpoint for a host named in an image reference (https, or http when insecure)."""
        url = _WELL_KNOWN_URLS.get(host) or f"{'http' if insecure else 'https'}://{host}"
        return cls(host=host, url=url, credentials=credentials, ca_file=ca_file, insecure=insecure)

    @classmethod
    def from_config(
        cls,
        *,
        url: str,
        internal_url: str | None = None,
        use_internal: bool = False,
        credentials: Credentials | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        token_flow: TokenFlow = "auto",
    ) -> RegistryEndpoint:
        """Build from a registry definition (``url``, ``internal_url``, ``credentials``, ``tls``).

        ``host`` is always the public address (what image references carry);
        ``use_internal`` sends the requests to ``internal_url`` instead.
        """
        public = url if "://" in url else f"https://{url}"
        host = urlsplit(public).netloc
        target = internal_url if (use_internal and internal_url) else public
        if "://" not in target:
            target = f"https://{target}"
        return cls(
            host=host,
            url=target,
            credentials=credentials,
            ca_file=ca_file,
            insecure=insecure,
            token_flow=token_flow,
        )

    def __repr__(self) -> str:
        user = self.credentials.username if self.credentials else None
        return (
            f"RegistryEndpoint(host={self.host!r}, url={self.url!r}, user={user!r}, "
            f"ca_file={self.ca_file!r}, insecure={self.insecure!r}, "
            f"token_flow={self.token_flow!r})"
        )
