"""Every sender is accepted with valid authentication and refused (401) without it."""

from __future__ import annotations

import pytest

from conveyor.core.credentials import Secret
from conveyor.core.errors import WebhookRejected
from conveyor.core.events import Headers, InboundDelivery
from conveyor.webhooks import FORMATS, receive

from .helpers import JSON, RECEIVED_AT, SECRET, basic, bearer, delivery, github_signature, payload

API_KEY_HEADER = "X-Conveyor-Token"

# How each sender is configured in docs/webhooks.md: (format, fixture, auth, header, extra).
SENDERS = [
    pytest.param("distribution", "distribution-push", "bearer", None, {}, id="distribution"),
    pytest.param("harbor", "harbor-push-artifact", "bearer", None, {}, id="harbor"),
    pytest.param(
        "harbor-cloudevents",
        "harbor-push-artifact-cloudevents",
        "bearer",
        None,
        {},
        id="harbor-cloudevents",
    ),
    pytest.param("acr", "acr-push", "basic", None, {}, id="acr"),
    pytest.param("azure", "azure-acr-push", "bearer", None, {}, id="azure"),
    pytest.param("dockerhub", "dockerhub-push", "basic", None, {}, id="dockerhub"),
    pytest.param(
        "github",
        "github-package-published",
        "hmac-sha256",
        None,
        {"X-GitHub-Event": "registry_package", "X-GitHub-Delivery": "d-1"},
        id="github",
    ),
    pytest.param("quay", "quay-push", "basic", None, {}, id="quay"),
    pytest.param("ecr", "ecr-image-action", "header", API_KEY_HEADER, {}, id="ecr"),
    pytest.param("gar", "gar-pubsub-insert", "bearer", None, {}, id="gar"),
]


def credentials(auth: str, body: bytes, secret: str = SECRET.reveal()) -> dict[str, str]:
    """The headers a correctly configured sender adds for this auth mode."""
    match auth:
        case "bearer":
            return bearer(secret)
        case "basic":
            return basic(secret)
        case "header":
            return {API_KEY_HEADER: secret}
        case "hmac-sha256":
            return {"X-Hub-Signature-256": github_signature(body, secret)}
    raise AssertionError(auth)


class TestEverySender:
    @pytest.mark.parametrize(("name", "fixture", "auth", "header", "extra"), SENDERS)
    def test_valid_auth_is_accepted(
        self, name: str, fixture: str, auth: str, header: str | None, extra: dict[str, str]
    ) -> None:
        """With the configured credential the delivery is verified and yields its event."""
        body = payload(fixture)
        request = delivery(body, **credentials(auth, body), **extra)
        events = receive(FORMATS[name], request, SECRET, auth=auth, header=header)
        assert len(events) == 1

    @pytest.mark.parametrize(("name", "fixture", "auth", "header", "extra"), SENDERS)
    def test_missing_auth_is_refused(
        self, name: str, fixture: str, auth: str, header: str | None, extra: dict[str, str]
    ) -> None:
        """Without any credential the delivery is refused with 401."""
        request = delivery(payload(fixture), **extra)
        with pytest.raises(WebhookRejected) as caught:
            receive(FORMATS[name], request, SECRET, auth=auth, header=header)
        assert caught.value.status == 401

    @pytest.mark.parametrize(("name", "fixture", "auth", "header", "extra"), SENDERS)
    def test_wrong_secret_is_refused(
        self, name: str, fixture: str, auth: str, header: str | None, extra: dict[str, str]
    ) -> None:
        """A credential made with another secret is refused with 401, without echoing either."""
        body = payload(fixture)
        request = delivery(body, **credentials(auth, body, "not-the-secret"), **extra)
        with pytest.raises(WebhookRejected) as caught:
            receive(FORMATS[name], request, SECRET, auth=auth, header=header)
        assert caught.value.status == 401
        assert SECRET.reveal() not in str(caught.value)
        assert "not-the-secret" not in str(caught.value)


class TestGitHubSignature:
    def test_tampered_body_is_refused(self) -> None:
        """A body changed after GitHub signed it fails the HMAC check."""
        body = payload("github-package-published")
        signature = github_signature(body)
        tampered = body.replace(b"myapp-V1.4.2", b"myapp-V6.6.6")
        request = delivery(tampered, **{"X-Hub-Signature-256": signature})
        with pytest.raises(WebhookRejected, match="X-Hub-Signature-256 signature does not match"):
            FORMATS["github"].verify(request, SECRET, auth="hmac-sha256", header=None)

    @pytest.mark.parametrize(
        "signature",
        [
            pytest.param("sha256=" + "0" * 64, id="zeros"),
            pytest.param("sha1=0123456789abcdef0123456789abcdef01234567", id="legacy-sha1"),
            pytest.param("", id="empty"),
            pytest.param("sha256=", id="no-hex"),
        ],
    )
    def test_tampered_signature_is_refused(self, signature: str) -> None:
        """A signature that is not the body's HMAC-SHA256 is refused with 401."""
        request = delivery(payload("github-package-published"), X_Hub_Signature_256=signature)
        with pytest.raises(WebhookRejected) as caught:
            FORMATS["github"].verify(request, SECRET, auth="hmac-sha256", header=None)
        assert caught.value.status == 401

    def test_uppercase_signature_header_name_is_found(self) -> None:
        """Header names are case-insensitive, as HTTP says."""
        body = payload("github-package-published")
        request = delivery(body, **{"X-HUB-SIGNATURE-256": github_signature(body)})
        FORMATS["github"].verify(request, SECRET, auth="hmac-sha256", header=None)


class TestAuthModes:
    @pytest.mark.parametrize(
        ("auth", "header", "headers", "message"),
        [
            pytest.param("bearer", None, {}, "missing Authorization header", id="bearer-missing"),
            pytest.param(
                "bearer", None, basic(), "is not 'Bearer <credentials>'", id="bearer-wrong-scheme"
            ),
            pytest.param(
                "bearer",
                None,
                {"Authorization": "Bearer"},
                "is not 'Bearer <credentials>'",
                id="bearer-empty",
            ),
            pytest.param(
                "bearer",
                None,
                {"Authorization": f"Bearer {SECRET.reveal()}x"},
                "bearer token does not match",
                id="bearer-longer",
            ),
            pytest.param("header", "X-Token", {}, "missing X-Token header", id="header-missing"),
            pytest.param(
                "header", None, {"X-Token": SECRET.reveal()}, "needs a header name", id="no-name"
            ),
            pytest.param(
                "basic",
                None,
                {"Authorization": "Basic !!!"},
                "are not base64",
                id="basic-not-base64",
            ),
            pytest.param(
                "basic",
                None,
                {"Authorization": "Basic bm9jb2xvbg=="},
                "are not user:password",
                id="basic-no-colon",
            ),
            pytest.param(
                "basic", None, basic("wrong"), "Basic password does not match", id="basic-wrong"
            ),
            pytest.param("mtls", None, bearer(), "auth mode is not one of", id="unknown-mode"),
        ],
    )
    def test_refusals_name_the_problem(
        self, auth: str, header: str | None, headers: dict[str, str], message: str
    ) -> None:
        """Each refusal is a 401 saying what was wrong, never the secret."""
        request = delivery(payload("distribution-push"), **headers)
        with pytest.raises(WebhookRejected, match=message) as caught:
            FORMATS["distribution"].verify(request, SECRET, auth=auth, header=header)
        assert caught.value.status == 401
        assert SECRET.reveal() not in str(caught.value)

    @pytest.mark.parametrize(
        ("auth", "header", "headers"),
        [
            pytest.param(
                "bearer", None, {"authorization": f"bearer {SECRET.reveal()}"}, id="bearer"
            ),
            pytest.param("header", "x-token", {"X-Token": SECRET.reveal()}, id="header"),
            pytest.param("basic", None, basic(user=""), id="basic-empty-user"),
        ],
    )
    def test_accepted_forms(self, auth: str, header: str | None, headers: dict[str, str]) -> None:
        """Schemes and header names match case-insensitively; the Basic user is not checked."""
        request = delivery(payload("distribution-push"), **headers)
        FORMATS["distribution"].verify(request, SECRET, auth=auth, header=header)

    def test_empty_secret_refuses_everything(self) -> None:
        """An endpoint whose secret is empty refuses even an empty credential."""
        request = delivery(payload("distribution-push"), Authorization="Bearer ")
        with pytest.raises(WebhookRejected, match="no secret configured") as caught:
            FORMATS["distribution"].verify(request, Secret(""), auth="bearer", header=None)
        assert caught.value.status == 401

    def test_doubled_header_is_refused(self) -> None:
        """A credential header sent twice never matches, even if one copy is right."""
        token = f"Bearer {SECRET.reveal()}"
        headers = Headers(
            [("Authorization", token), ("Authorization", token), ("Content-Type", JSON)]
        )
        request = InboundDelivery(
            headers=headers, body=payload("distribution-push"), received_at=RECEIVED_AT
        )
        with pytest.raises(WebhookRejected):
            FORMATS["distribution"].verify(request, SECRET, auth="bearer", header=None)

    def test_non_ascii_credentials_are_compared(self) -> None:
        """A non-ASCII secret is compared as UTF-8 bytes, and a wrong one is a plain 401."""
        FORMATS["distribution"].verify(
            delivery(b"{}", **bearer()), SECRET, auth="bearer", header=None
        )
        with pytest.raises(WebhookRejected):
            FORMATS["distribution"].verify(
                delivery(b"{}", Authorization="Bearer \udcff\u2603"),
                SECRET,
                auth="bearer",
                header=None,
            )

    @pytest.mark.parametrize("auth", ["bearer", "header", "hmac-sha256", "basic"])
    def test_secret_with_surrogates_is_usable(self, auth: str) -> None:
        """A secret holding surrogate escapes (undecodable environment bytes) works in every mode."""
        secret = Secret("abc\udcff")
        body = payload("distribution-push")
        headers = {
            "bearer": {"Authorization": "Bearer abc\udcff"},
            "header": {"X-Token": "abc\udcff"},
            "hmac-sha256": {"X-Hub-Signature-256": github_signature(body, "abc")},
            "basic": basic("abc"),
        }[auth]
        request = delivery(body, **headers)
        if auth in ("bearer", "header"):
            FORMATS["distribution"].verify(request, secret, auth=auth, header="X-Token")
            return
        with pytest.raises(WebhookRejected) as caught:
            FORMATS["distribution"].verify(request, secret, auth=auth, header=None)
        assert caught.value.status == 401

    def test_verify_does_not_parse(self) -> None:
        """Verification succeeds on a body that would not parse: it looks at credentials only."""
        body = b"\xff not json"
        request = delivery(body, None, X_Hub_Signature_256=github_signature(body))
        FORMATS["github"].verify(request, SECRET, auth="hmac-sha256", header=None)
