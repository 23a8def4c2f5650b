"""A configured registry as a `core.ports.Registry` that any event loop may use.

`DistributionRegistry` keeps a connection pool, which belongs to the event
loop that opened it. On a loop kept by `conveyor.aio.thread_loop` (the
server's worker thread) the configured registry keeps one client per
registry (and retry policy: polls do not retry) on that loop and reuses it,
with its connections, SSL context and tokens, for every call; it is closed
when the thread ends. Anywhere else (the CLI, request threads, each
`asyncio.run`) a call opens a client of its own and closes it afterwards: no
connection outlives its loop, none leaks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from conveyor import aio
from conveyor.config import models
from conveyor.core.credentials import Credentials
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.core.polling import TagCheck, TagListing, Validators
from conveyor.registry import copy, inspection
from conveyor.registry.client import DistributionRegistry, RetryPolicy
from conveyor.registry.endpoints import RegistryEndpoint

# Polls do not retry within a poll: the poller backs off (honouring Retry-After) instead.
POLL_RETRY = RetryPolicy(attempts=1)


def endpoint_for(definition: models.Registry, credentials: Credentials | None) -> RegistryEndpoint:
    """The endpoint of a configured registry (requests to its public address)."""
    return RegistryEndpoint.from_config(
        url=definition.url,
        internal_url=definition.internal_url,
        credentials=credentials,
        ca_file=definition.tls.ca_file,
        insecure=definition.tls.insecure,
        token_flow=definition.token_flow,
    )


class ConfiguredRegistry:
    """One configured registry: the kept client on a kept loop, else a client per call.

    ``chunk_size`` (the definition's ``chunk_size``) goes to every client:
    blobs larger than it are uploaded to this registry in PATCH chunks of that size.
    """

    def __init__(self, endpoint: RegistryEndpoint, *, chunk_size: int | None = None) -> None:
        self.endpoint = endpoint
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"ConfiguredRegistry({self.endpoint!r})"

    @asynccontextmanager
    async def client(self, retry: RetryPolicy | None = None) -> AsyncIterator[DistributionRegistry]:
        """The client for one call: kept on a kept loop, else opened and closed around it.

        ``retry`` replaces the client's default policy (one kept client per policy).
        """

        def make() -> DistributionRegistry:
            return DistributionRegistry(
                self.endpoint, retry=retry or RetryPolicy(), chunk_size=self.chunk_size
            )

        kept = aio.shared(("registry", self, retry), make)
        if kept is not None:
            yield kept
            return
        async with make() as client:
            yield client

    async def resolve(self, ref: ImageRef) -> PinnedImage:
        async with self.client() as client:
            return await client.resolve(ref)

    async def list_tags(self, repository: Repository) -> Sequence[str]:
        async with self.client() as client:
            return await client.list_tags(repository)

    async def list_tags_if_changed(
        self, repository: Repository, validators: Validators
    ) -> TagListing:
        async with self.client(POLL_RETRY) as client:
            return await client.list_tags_if_changed(repository, validators)

    async def check_tag(self, ref: ImageRef, *, digest: Digest, etag: str | None) -> TagCheck:
        async with self.client(POLL_RETRY) as client:
            return await client.check_tag(ref, digest=digest, etag=etag)

    async def created(
        self, repository: Repository, tags: Sequence[str]
    ) -> Mapping[str, datetime | None]:
        async with self.client() as client:
            return await inspection.created_times(client, repository, tags)

    async def copy(
        self, image: PinnedImage, *, to: Repository, tag: str | None = None
    ) -> PinnedImage:
        """Copy exactly this digest; within its own repository this is a retag."""
        async with self.client() as client:
            if to == image.repository and tag is not None:
                return await client.retag(image, tag)
            return await client.copy(image, to=to, tag=tag)


async def copy_between(
    source: ConfiguredRegistry,
    image: PinnedImage,
    *,
    destination: ConfiguredRegistry,
    to: Repository,
    tag: str | None = None,
) -> PinnedImage:
    """Copy exactly this digest (every platform) into another registry; checked afterwards."""
    async with source.client() as from_client, destination.client() as to_client:
        result = await copy.copy_image(from_client, image, destination=to_client, to=to, tag=tag)
    return result.image


def client_for(definition: models.Registry, credentials: Credentials | None) -> ConfiguredRegistry:
    """The registry client for a configured registry."""
    return ConfiguredRegistry(
        endpoint_for(definition, credentials), chunk_size=definition.chunk_size
    )
