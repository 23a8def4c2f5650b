"""Webhook formats: verifying and parsing each registry's deliveries (pure: bytes in, events out).

The HTTP endpoint ``/hooks/<name>`` handles a delivery in this order, and the
order is the design:

1. **Cap the body** (``check_size``, ``MAX_BODY_BYTES``) on Content-Length and
   while reading, before anything else: a flood of large bodies costs nothing.
2. **Verify** (``WebhookFormat.verify``) the credential with
   ``hmac.compare_digest``, or for ``auth: oidc`` the signed token
   (``oidc.OidcVerifier``, keys passed in), before the body is parsed:
   nothing an unauthenticated caller sends reaches a parser. Failure is a
   401 that changes nothing.
3. **Parse** (``WebhookFormat.parse``) into ``RegistryEvent`` values: content
   type, JSON and fields are checked, and failures are a 400 naming the
   problem. Parsing is pure, so it never half-stores anything.
4. **Store** the delivery and its events in the inbox, in one transaction
   (shared with the other deliveries waiting at that moment: group commit),
   deduplicated by (endpoint, delivery id) and by ``core.events.dedupe_key``.
5. **Reply** 2xx only after the commit, so an accepted event is never lost;
   triggers run later from the inbox (registries retry anything else).

``receive`` does steps 1 to 3 for a fully read body. Every failure is a
``WebhookRejected`` whose ``status`` is 401, 400 or 413 and whose message
never contains the secret or the body.

``FORMATS`` is the explicit table from a webhook's ``format:`` in the config
to its implementation.
"""

from __future__ import annotations

from conveyor.core.credentials import Secret
from conveyor.core.events import InboundDelivery, RegistryEvent
from conveyor.core.ports import WebhookFormat
from conveyor.webhooks._shared import JSON_CONTENT_TYPES, MAX_BODY_BYTES, check_size
from conveyor.webhooks.acr import AcrWebhook
from conveyor.webhooks.azure import AzureWebhook
from conveyor.webhooks.distribution import DistributionWebhook
from conveyor.webhooks.dockerhub import DockerHubWebhook
from conveyor.webhooks.ecr import EcrWebhook
from conveyor.webhooks.gar import GarWebhook
from conveyor.webhooks.github import GitHubWebhook
from conveyor.webhooks.harbor import HarborCloudEventsWebhook, HarborWebhook
from conveyor.webhooks.oidc import OidcVerifier
from conveyor.webhooks.quay import QuayWebhook

__all__ = [
    "FORMATS",
    "JSON_CONTENT_TYPES",
    "MAX_BODY_BYTES",
    "check_size",
    "receive",
]

FORMATS: dict[str, WebhookFormat] = {
    "distribution": DistributionWebhook(),
    "harbor": HarborWebhook(),
    "harbor-cloudevents": HarborCloudEventsWebhook(),
    "acr": AcrWebhook(),
    "azure": AzureWebhook(),
    "dockerhub": DockerHubWebhook(),
    "github": GitHubWebhook(),
    "quay": QuayWebhook(),
    "ecr": EcrWebhook(),
    "gar": GarWebhook(),
}


def receive(
    webhook_format: WebhookFormat,
    delivery: InboundDelivery,
    secret: Secret,
    *,
    auth: str,
    header: str | None = None,
    oidc: OidcVerifier | None = None,
) -> list[RegistryEvent]:
    """Cap, verify, then parse one delivery; raises WebhookRejected (413, 401 or 400).

    ``auth: oidc`` is checked by ``oidc`` (the secret is not used), every other
    mode by the format's ``verify`` with the secret. The caller stores the
    returned events (possibly none) and only then replies 2xx.
    """
    check_size(len(delivery.body))
    if auth == "oidc" and oidc is not None:
        oidc.verify(delivery)
    else:  # verify_auth refuses oidc without a verifier
        webhook_format.verify(delivery, secret, auth=auth, header=header)
    return webhook_format.parse(delivery)
