"""Malformed deliveries are refused with 400 (413 when too large), naming the problem."""

from __future__ import annotations

import base64
import json

import pytest

from conveyor.core.errors import WebhookRejected
from conveyor.webhooks import FORMATS, MAX_BODY_BYTES, check_size, receive

from .helpers import SECRET, bearer, delivery, payload
from .test_parse import mutate


def gar_message(data: bytes) -> bytes:
    envelope = {"message": {"data": base64.b64encode(data).decode(), "messageId": "m-1"}}
    return json.dumps(envelope).encode()


GITHUB = {"X-GitHub-Event": "registry_package"}

MALFORMED = [
    pytest.param(
        "distribution",
        b"{",
        {},
        "distribution: body is not valid JSON at line 1",
        id="truncated-json",
    ),
    pytest.param("distribution", b"\xff\xfe\x00", {}, "body is not valid JSON", id="not-utf8"),
    pytest.param(
        "distribution", b"[]", {}, "field 'body' must be an object, not an array", id="array"
    ),
    pytest.param("distribution", b'{"x": NaN}', {}, "body is not valid JSON", id="nan"),
    pytest.param("distribution", b"[" * 100_000, {}, "body is not valid JSON", id="deep-nesting"),
    pytest.param("distribution", b"{}", {}, "field 'events' is missing", id="no-events"),
    pytest.param(
        "distribution",
        mutate("distribution-push", {"events.0.target.repository": None}),
        {},
        "field 'events[0].target.repository' is missing",
        id="distribution-no-repository",
    ),
    pytest.param(
        "distribution",
        mutate("distribution-push", {"events.0.target.digest": "sha256:abc"}),
        {},
        "field 'events[0].target.digest' is not a digest",
        id="distribution-short-digest",
    ),
    pytest.param(
        "distribution",
        mutate("distribution-push", {"events.0.target.repository": "MyTeam/App"}),
        {},
        "field 'events[0].target.repository' is not a repository name",
        id="distribution-uppercase-repository",
    ),
    pytest.param(
        "distribution",
        mutate("distribution-push", {"events.0.target.tag": "-bad"}),
        {},
        "field 'events[0].target.tag' is not a tag",
        id="distribution-bad-tag",
    ),
    pytest.param(
        "distribution",
        mutate("distribution-push", {"events.0.timestamp": "yesterday"}),
        {},
        "field 'events[0].timestamp' is not an RFC 3339 time",
        id="distribution-bad-time",
    ),
    pytest.param(
        "distribution",
        mutate("distribution-delete-tag", {"events.0.target.tag": None}),
        {},
        "field 'events[0].target.digest' is missing (a delete names a digest or a tag)",
        id="distribution-delete-of-nothing",
    ),
    pytest.param(
        "harbor",
        mutate("harbor-push-artifact", {"event_data.repository": None}),
        {},
        "harbor: field 'event_data.repository' is missing",
        id="harbor-no-repository",
    ),
    pytest.param(
        "harbor",
        mutate("harbor-push-artifact", {"event_data.resources.0.digest": 42}),
        {},
        "field 'event_data.resources[0].digest' must be a string, not a number",
        id="harbor-digest-number",
    ),
    pytest.param(
        "harbor",
        mutate("harbor-push-artifact", {"occur_at": "soon"}),
        {},
        "field 'occur_at' must be a number, not a string",
        id="harbor-occur-at-string",
    ),
    pytest.param(
        "harbor",
        mutate("harbor-push-artifact", {"occur_at": 10**30}),
        {},
        "field 'occur_at' is not a time in unix seconds",
        id="harbor-occur-at-huge",
    ),
    pytest.param(
        "harbor",
        mutate(
            "harbor-scanning-completed",
            {"event_data.resources.0.scan_overview": {"x": {"summary": {"summary": {"High": -1}}}}},
        ),
        {},
        "field 'event_data.resources[0].scan_overview.x.summary.summary.High' must be a non-negative integer",
        id="harbor-negative-count",
    ),
    pytest.param(
        "harbor-cloudevents",
        mutate("harbor-push-artifact-cloudevents", {"id": None}),
        {},
        "harbor-cloudevents: field 'id' is missing",
        id="cloudevents-no-id",
    ),
    pytest.param(
        "acr",
        mutate("acr-push", {"push_data.tag": None}),
        {},
        "acr: field 'push_data.tag' is missing",
        id="acr-no-tag",
    ),
    pytest.param(
        "azure",
        mutate("azure-acr-push", {"target.digest": None}),
        {},
        "azure: field 'target.digest' is missing",
        id="azure-no-digest",
    ),
    pytest.param(
        "dockerhub",
        mutate("dockerhub-push", {"repository": "myteam/myapp"}),
        {},
        "dockerhub: field 'repository' must be an object, not a string",
        id="dockerhub-repository-string",
    ),
    pytest.param(
        "github",
        payload("github-package-published"),
        {},
        "github: missing X-GitHub-Event header",
        id="github-no-event-header",
    ),
    pytest.param(
        "github",
        mutate("github-package-published", {"registry_package.package_version": None}),
        GITHUB,
        "github: field 'registry_package.package_version' is missing",
        id="github-no-version",
    ),
    pytest.param(
        "github",
        mutate(
            "github-package-published",
            {
                "registry_package.package_version.container_metadata": None,
                "registry_package.package_version.version": "1.0.0",
                "registry_package.package_version.name": "1.0.0",
            },
        ),
        GITHUB,
        "field 'registry_package.package_version.version' is missing (expected the manifest digest)",
        id="github-no-digest",
    ),
    pytest.param(
        "quay",
        mutate("quay-push", {"updated_tags": [1]}),
        {},
        "quay: field 'updated_tags[0]' must be a string, not a number",
        id="quay-tag-number",
    ),
    pytest.param(
        "ecr",
        mutate("ecr-image-action", {"detail.image-digest": None}),
        {},
        "ecr: field 'detail.image-digest' is missing",
        id="ecr-no-digest",
    ),
    pytest.param(
        "ecr",
        mutate("ecr-image-scan", {"detail.finding-severity-counts": {"HIGH": "2"}}),
        {},
        "field 'detail.finding-severity-counts.HIGH' must be a non-negative integer",
        id="ecr-count-string",
    ),
    pytest.param(
        "gar",
        mutate("gar-pubsub-insert", {"message.data": "***"}),
        {},
        "gar: field 'message.data' is not base64",
        id="gar-not-base64",
    ),
    pytest.param(
        "gar",
        gar_message(b"not json"),
        {},
        "gar: field 'message.data' is not valid JSON",
        id="gar-data-not-json",
    ),
    pytest.param(
        "gar",
        gar_message(b'{"digest": "x"}'),
        {},
        "gar: field 'message.data.action' is missing",
        id="gar-no-action",
    ),
    pytest.param(
        "gar",
        gar_message(b'{"action": "INSERT"}'),
        {},
        "field 'message.data.digest' is missing (the message names neither digest nor tag)",
        id="gar-no-reference",
    ),
    pytest.param(
        "gar",
        gar_message(b'{"action": "INSERT", "digest": "us-docker.pkg.dev/p/r/app:v1"}'),
        {},
        "field 'message.data.digest' has no @sha256:<hex> digest",
        id="gar-digest-without-digest",
    ),
]


class TestMalformed:
    @pytest.mark.parametrize(("name", "body", "headers", "message"), MALFORMED)
    def test_refused_with_400_naming_the_problem(
        self, name: str, body: bytes, headers: dict[str, str], message: str
    ) -> None:
        """A malformed body is refused with 400 and a message naming the field or problem."""
        with pytest.raises(WebhookRejected) as caught:
            FORMATS[name].parse(delivery(body, **headers))
        assert caught.value.status == 400
        assert message in str(caught.value)

    def test_messages_never_echo_field_values(self) -> None:
        """A refusal names the field but not the value that was sent."""
        body = mutate("distribution-push", {"events.0.target.digest": "sha256:topsecretvalue"})
        with pytest.raises(WebhookRejected) as caught:
            FORMATS["distribution"].parse(delivery(body))
        assert "topsecretvalue" not in str(caught.value)


class TestContentType:
    @pytest.mark.parametrize(
        "content_type",
        [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/vnd.docker.distribution.events.v1+json",
            "application/vnd.docker.distribution.events.v2+json",
            "application/cloudevents+json; charset=utf-8",
        ],
    )
    def test_json_types_are_accepted(self, content_type: str) -> None:
        """JSON content types, with parameters and in any case, are accepted."""
        assert FORMATS["distribution"].parse(delivery(payload("distribution-push"), content_type))

    @pytest.mark.parametrize(
        ("content_type", "message"),
        [
            pytest.param(
                "application/x-www-form-urlencoded",
                "Content-Type 'application/x-www-form-urlencoded' is not JSON; expected one of",
                id="form",
            ),
            pytest.param("text/plain", "Content-Type 'text/plain' is not JSON", id="text"),
            pytest.param(None, "missing Content-Type header; expected one of", id="missing"),
        ],
    )
    def test_other_types_are_refused(self, content_type: str | None, message: str) -> None:
        """A body that is not declared JSON is refused with 400 naming its content type."""
        with pytest.raises(WebhookRejected, match=message) as caught:
            FORMATS["quay"].parse(delivery(payload("quay-push"), content_type))
        assert caught.value.status == 400


class TestSize:
    def test_limit_is_one_mebibyte(self) -> None:
        """The default body limit is 1 MiB."""
        assert MAX_BODY_BYTES == 1024 * 1024

    def test_at_the_limit_is_accepted(self) -> None:
        """A body of exactly the limit passes the size check."""
        check_size(MAX_BODY_BYTES)

    def test_over_the_limit_is_413(self) -> None:
        """A body one byte over the limit is refused with 413 saying both sizes."""
        with pytest.raises(
            WebhookRejected, match="request body of 1048577 bytes is over the limit of 1048576"
        ) as caught:
            check_size(MAX_BODY_BYTES + 1)
        assert caught.value.status == 413

    def test_receive_checks_size_before_auth(self) -> None:
        """An oversized delivery is refused with 413 before its credential is looked at."""
        request = delivery(b" " * (MAX_BODY_BYTES + 1))
        with pytest.raises(WebhookRejected) as caught:
            receive(FORMATS["distribution"], request, SECRET, auth="bearer", header=None)
        assert caught.value.status == 413

    def test_receive_checks_auth_before_parsing(self) -> None:
        """An unauthenticated malformed delivery is a 401, not a 400: parsing comes after."""
        with pytest.raises(WebhookRejected) as caught:
            receive(FORMATS["distribution"], delivery(b"{"), SECRET, auth="bearer", header=None)
        assert caught.value.status == 401

    def test_receive_parses_after_auth(self) -> None:
        """An authenticated malformed delivery is a 400."""
        request = delivery(b"{", **bearer())
        with pytest.raises(WebhookRejected) as caught:
            receive(FORMATS["distribution"], request, SECRET, auth="bearer", header=None)
        assert caught.value.status == 400


def test_sender_chosen_keys_are_shortened_in_messages() -> None:
    """A huge or non-printable key named in an error is cut short and escaped."""
    key = "\u2603" + "K" * 5000
    body = mutate("ecr-image-scan", {"detail.finding-severity-counts": {key: "x"}})
    with pytest.raises(WebhookRejected) as caught:
        FORMATS["ecr"].parse(delivery(body))
    assert len(str(caught.value)) < 300
    assert "\\u2603" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "expected"),
    [("bad\nkey", "bad\\nkey"), ("\x1b[31mred", "\\x1b[31mred"), ("tab\there", "tab\\there")],
)
def test_control_characters_in_sender_keys_are_escaped(key: str, expected: str) -> None:
    """A newline or terminal escape the sender chose cannot reach a message (or a log) raw."""
    body = mutate("ecr-image-scan", {"detail.finding-severity-counts": {key: "x"}})
    with pytest.raises(WebhookRejected) as caught:
        FORMATS["ecr"].parse(delivery(body))
    message = str(caught.value)
    assert expected in message
    assert message.isprintable()
