"""Property-based fuzzing: whatever arrives, verify and parse raise only WebhookRejected."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.core.credentials import Secret
from conveyor.core.errors import WebhookRejected
from conveyor.core.events import Headers, InboundDelivery, RegistryEvent
from conveyor.core.images import NAME_RE, TAG_RE
from conveyor.webhooks import FORMATS, receive

from .helpers import RECEIVED_AT, SECRET, payload
from .test_auth import SENDERS, credentials

NAMES = sorted(FORMATS)
AUTH_MODES = ["bearer", "header", "hmac-sha256", "basic", "nonsense"]
FIXTURES = {case.values[0]: case.values[1] for case in SENDERS}
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["sha256:" + "a" * 64, "myteam/myapp", "myapp-V1.4.2", "push", "INSERT"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
header_values = st.text(max_size=40) | st.sampled_from(
    ["application/json", "Bearer x", "Basic ::", "sha256=00", "registry_package", "package"]
)
header_maps = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "Authorization",
            "X-Hub-Signature-256",
            "X-GitHub-Event",
            "X-GitHub-Delivery",
            "X-Conveyor-Token",
            "X-Goog-Pubsub-Message-Id",
        ]
    ),
    header_values,
)


def call(name: str, request: InboundDelivery, **verify: Any) -> list[RegistryEvent] | None:
    """Run verify (when asked) and parse; only WebhookRejected with a 4xx status may escape."""
    try:
        if verify:
            return receive(FORMATS[name], request, verify.pop("secret"), **verify)
        return FORMATS[name].parse(request)
    except WebhookRejected as exc:
        assert exc.status in (400, 401, 413)
        assert str(exc)
        return None


def check(events: list[RegistryEvent] | None) -> None:
    """Accepted events satisfy the grammar every consumer relies on."""
    for event in events or []:
        assert NAME_RE.match(event.repository)
        assert event.tag is None or TAG_RE.match(event.tag)
        assert event.delivery_id


def with_json_headers(headers: dict[str, str]) -> Headers:
    return Headers({"Content-Type": "application/json", **headers})


def mutations(data: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every path into a JSON document."""
    found: list[tuple[object, ...]] = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            found += mutations(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += mutations(value, (*path, index))
    return found


def mutated(data: Any, path: tuple[object, ...], value: object, delete: bool) -> Any:
    """A copy of the document with one node replaced or deleted."""
    if not path:
        return value
    copy = json.loads(json.dumps(data))
    node = copy
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy


class TestFuzz:
    @FUZZ
    @given(
        name=st.sampled_from(NAMES),
        body=st.binary(max_size=300),
        headers=header_maps,
        auth=st.sampled_from(AUTH_MODES),
        header=st.none() | st.sampled_from(["X-Conveyor-Token", "", "Authorization"]),
        secret=st.text(max_size=12),
    )
    def test_random_bytes(
        self,
        name: str,
        body: bytes,
        headers: dict[str, str],
        auth: str,
        header: str | None,
        secret: str,
    ) -> None:
        """Random bytes and headers through verify and parse raise nothing but WebhookRejected."""
        request = InboundDelivery(headers=Headers(headers), body=body, received_at=RECEIVED_AT)
        call(name, request, secret=Secret(secret), auth=auth, header=header)
        check(call(name, request))

    @FUZZ
    @given(name=st.sampled_from(NAMES), document=json_values, headers=header_maps)
    def test_random_json(self, name: str, document: object, headers: dict[str, str]) -> None:
        """Random JSON documents are parsed into valid events or refused with 400."""
        body = json.dumps(document).encode()
        request = InboundDelivery(
            headers=with_json_headers(headers), body=body, received_at=RECEIVED_AT
        )
        check(call(name, request))

    @FUZZ
    @given(data=st.data(), name=st.sampled_from(NAMES), value=json_values, delete=st.booleans())
    def test_mutated_fixtures(
        self, data: st.DataObject, name: str, value: object, delete: bool
    ) -> None:
        """A recorded payload with one node replaced or deleted never escapes as another error."""
        document = json.loads(payload(FIXTURES[name]))
        path = data.draw(st.sampled_from(mutations(document)))
        body = json.dumps(mutated(document, path, value, delete and bool(path))).encode()
        headers = {"X-GitHub-Event": data.draw(st.sampled_from(["registry_package", "package"]))}
        request = InboundDelivery(
            headers=with_json_headers(headers), body=body, received_at=RECEIVED_AT
        )
        check(call(name, request))

    @FUZZ
    @given(data=st.data(), message=json_values, raw=st.binary(max_size=60))
    def test_gar_message_data(self, data: st.DataObject, message: object, raw: bytes) -> None:
        """Whatever a Pub/Sub message's base64 data decodes to, GAR parsing stays a 400 at worst."""
        decoded = data.draw(st.sampled_from([json.dumps(message).encode(), raw]))
        envelope = {"message": {"data": base64.b64encode(decoded).decode(), "messageId": "1"}}
        request = InboundDelivery(
            headers=with_json_headers({}),
            body=json.dumps(envelope).encode(),
            received_at=RECEIVED_AT,
        )
        check(call("gar", request))

    @FUZZ
    @given(name=st.sampled_from(NAMES), flip=st.integers(min_value=0, max_value=10_000))
    def test_signed_then_corrupted(self, name: str, flip: int) -> None:
        """A correctly authenticated delivery whose body is corrupted is accepted or a 400."""
        body = bytearray(payload(FIXTURES[name]))
        body[flip % len(body)] ^= 0x20
        case = next(case for case in SENDERS if case.values[0] == name)
        _, _, auth, header, extra = case.values
        headers = {**credentials(auth, bytes(body)), **extra}
        request = InboundDelivery(
            headers=with_json_headers(headers), body=bytes(body), received_at=RECEIVED_AT
        )
        check(call(name, request, secret=SECRET, auth=auth, header=header))


@pytest.mark.parametrize("name", NAMES)
def test_unmutated_fixture_parses(name: str) -> None:
    """The fuzzers start from payloads that parse (so mutations explore real shapes)."""
    request = InboundDelivery(
        headers=with_json_headers({"X-GitHub-Event": "registry_package"}),
        body=payload(FIXTURES[name]),
        received_at=RECEIVED_AT,
    )
    assert FORMATS[name].parse(request)
