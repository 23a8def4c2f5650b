"""The public surface of the webhook layer, pinned."""

from __future__ import annotations

import conveyor.webhooks
from conveyor.core.ports import WebhookFormat


def test_exported_names() -> None:
    """conveyor.webhooks exports exactly the table, the size cap and receive."""
    assert sorted(conveyor.webhooks.__all__) == [
        "FORMATS",
        "JSON_CONTENT_TYPES",
        "MAX_BODY_BYTES",
        "check_size",
        "receive",
    ]


def test_format_names_match_the_config() -> None:
    """The table is keyed by exactly the config's webhook format values."""
    from typing import get_args

    from conveyor.config.models import WebhookFormat as ConfigFormats

    assert sorted(conveyor.webhooks.FORMATS) == sorted(get_args(ConfigFormats))


def test_every_format_implements_the_port() -> None:
    """Every table entry has the Protocol's sender, verify and parse."""
    for webhook_format in conveyor.webhooks.FORMATS.values():
        implementation: WebhookFormat = webhook_format
        assert callable(implementation.verify) and callable(implementation.parse)
        assert isinstance(type(implementation).sender, str)
