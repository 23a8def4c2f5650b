"""A configured registry as a `core.ports.Registry` that any event loop may use.

`DistributionRegistry` keeps a connection pool, which belongs to the event
loop that opened it. The engine, the event processor and the CLI each run
their own loops, so the configured registry opens a client per call and
closes it afterwards: no connection outlives its loop, none is leaked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from conveyor.config import models
from conveyor.core.credentials import Credentials
from conveyor.core.images import ImageRef, PinnedImage, Repository
from conveyor.registry import copy, inspection
from conveyor.registry.client import DistributionRegistry
from conveyor.registry.endpoints import RegistryEndpoint


def endpoint_for(definition: models.Registry, credentials: Credentials | None) -> RegistryEndpoint:
    """The endpoint of a configured registry (requests to its public address)."""
    return RegistryEndpoint.from_config(
        url=definition.url,
        internal_url=definition.internal_url,
        credentials=credentials,
        ca_file=definition.tls.ca_file,
        insecure=definition.tls.insecure,
    )


class ConfiguredRegistry:
    """One configured registry; each call uses a client of its own."""

    def __init__(self, endpoint: RegistryEndpoint) -> None:
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"ConfiguredRegistry({self.endpoint!r})"

    async def resolve(self, ref: ImageRef) -> PinnedImage:
        async with DistributionRegistry(self.endpoint) as client:
            return await client.resolve(ref)

    async def list_tags(self, repository: Repository) -> Sequence[str]:
        async with DistributionRegistry(self.endpoint) as client:
            return await client.list_tags(repository)

    async def created(
        self, repository: Repository, tags: Sequence[str]
    ) -> Mapping[str, datetime | None]:
        async with DistributionRegistry(self.endpoint) as client:
            return await inspection.created_times(client, repository, tags)

    async def copy(
        self, image: PinnedImage, *, to: Repository, tag: str | None = None
    ) -> PinnedImage:
        """Copy exactly this digest; within its own repository this is a retag."""
        async with DistributionRegistry(self.endpoint) as client:
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
    async with (
        DistributionRegistry(source.endpoint) as from_client,
        DistributionRegistry(destination.endpoint) as to_client,
    ):
        result = await copy.copy_image(from_client, image, destination=to_client, to=to, tag=tag)
    return result.image


def client_for(definition: models.Registry, credentials: Credentials | None) -> ConfiguredRegistry:
    """The registry client for a configured registry."""
    return ConfiguredRegistry(endpoint_for(definition, credentials))
