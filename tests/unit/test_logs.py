"""Log redaction: no credential reaches a log line."""

from __future__ import annotations

from conveyor import logs
from conveyor.core.credentials import Secret


def test_secrets_and_secret_keys_are_masked() -> None:
    """Secret values and values under password/token/secret/authorization keys are masked."""
    event = logs.redact(
        None,
        "info",
        {
            "event": "pushed",
            "password": "hunter2",
            "Authorization": "Bearer abc",
            "credential": Secret("s3cr3t"),
            "repository": "team/app",
        },
    )
    assert event == {
        "event": "pushed",
        "password": "**********",
        "Authorization": "**********",
        "credential": "**********",
        "repository": "team/app",
    }


def test_long_values_are_cut() -> None:
    """Long values (remote error bodies) are cut before logging."""
    event = logs.redact(None, "info", {"event": "x", "body": "a" * 2000})
    assert len(event["body"]) == logs.MAX_VALUE + 1
