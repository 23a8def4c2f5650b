"""Building a registry client from a configured registry."""

from __future__ import annotations

from conveyor.config import models
from conveyor.core.credentials import Credentials
from conveyor.registry.distribution import DistributionRegistry, RegistryEndpoint


def endpoint_for(definition: models.Registry, credentials: Credentials | None) -> RegistryEndpoint:
    """The endpoint of a configured registry (public address)."""
    return RegistryEndpoint(
        host=definition.host,
        url=definition.url,
        credentials=credentials,
        ca_file=definition.tls.ca_file,
        insecure=definition.tls.insecure,
    )


def client_for(
    definition: models.Registry, credentials: Credentials | None
) -> DistributionRegistry:
    """The OCI Distribution client for a configured registry."""
    return DistributionRegistry(endpoint_for(definition, credentials))
