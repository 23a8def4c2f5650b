"""Behaviour 2.8.2 cannot show, against small loopback stand-ins (labelled as such).

Registry 2.8.2 ignores ``n``/``last`` on tags/list, never answers 429 and
refuses to store unsigned schema1 manifests, so these stand-ins follow the
distribution-spec v1.1.1 text ("Listing Tags", "Error Codes", 429 with
``Retry-After``) and distribution v2.8.2's schema1 media type. Each serves
only the endpoints its test needs.
"""

from __future__ import annotations

import json
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor.core import errors
from conveyor.core.images import Digest, ImageRef, Repository
from conveyor.core.polling import Validators
from conveyor.registry.client import DistributionRegistry, RetryPolicy
from conveyor.registry.endpoints import RegistryEndpoint
from conveyor.registry.wiring import ConfiguredRegistry
from tests.support.registry import QuietHandler, serve_http

ALL_TAGS = [f"v{i:02d}" for i in range(7)]


class PaginatingStandIn(QuietHandler):
    """Stand-in for a registry that paginates tags/list properly (n, last, Link)."""

    use_link = True
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path == "/v2/":
            self.reply(200, b"{}")
            return
        query = parse_qs(urlsplit(self.path).query)
        n = min(int(query.get("n", ["1000"])[0]), 3)  # the server caps pages at 3
        last = query.get("last", [""])[0]
        remaining = [t for t in ALL_TAGS if t > last]
        page = remaining[:n]
        if last == "v02":
            page = ["v02", *page]  # a duplicate across pages must be dropped
        headers = {"Content-Type": "application/json"}
        if len(remaining) > n and self.use_link:
            headers["Link"] = f'</v2/app/tags/list?n={n}&last={page[-1]}>; rel="next"'
        self.reply(200, json.dumps({"name": "app", "tags": page}).encode(), headers)


def client(url: str, **options: object) -> DistributionRegistry:
    host = url.removeprefix("http://")
    endpoint = RegistryEndpoint(host=host, url=url, insecure=True)
    return DistributionRegistry(endpoint, **options)  # type: ignore[arg-type]


class TestTagPagination:
    async def test_follows_link_and_drops_duplicates(self):
        """Tags are gathered across Link-paginated pages, each once, in order."""
        PaginatingStandIn.requests = []
        with serve_http(PaginatingStandIn) as url:
            async with client(url) as registry:
                tags = await registry.list_tags(Repository(url, "app"))
        assert tags == ALL_TAGS
        assert len([p for p in PaginatingStandIn.requests if "tags/list" in p]) == 3

    async def test_full_page_without_link_asks_again_with_last(self):
        """A registry that pages but sends no Link is asked again with last=."""

        class NoLink(PaginatingStandIn):
            use_link = False

        with serve_http(NoLink) as url:
            async with client(url) as registry:
                tags = await registry.list_tags(Repository(url, "app"), page_size=3)
        assert tags == ALL_TAGS


class Throttled(QuietHandler):
    """Stand-in that answers 429 with Retry-After, then 503, then the manifest."""

    script: ClassVar[list[tuple[int, dict[str, str]]]] = []
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2,
            },
            "layers": [],
        }
    ).encode()

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.reply(200, b"{}")
            return
        if self.script:
            status, headers = self.script.pop(0)
            self.reply(status, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', headers)
            return
        self.reply(200, self.body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


class TestRetries:
    async def test_retry_after_is_honoured(self):
        """429 with Retry-After waits that long; 503 backs off; then the request succeeds."""
        Throttled.script = [(429, {"Retry-After": "3"}), (503, {})]
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        with serve_http(Throttled) as url:
            retry = RetryPolicy(attempts=4, base_delay=0.25)
            async with client(url, sleep=sleep, retry=retry) as registry:
                pinned = await registry.resolve(
                    ImageRef.parse(f"{url.removeprefix('http://')}/a:v1")
                )
        assert slept == [3.0, 0.5]
        assert pinned.digest.hex

    async def test_persistent_429_is_retryable_unavailable(self):
        """When retries run out the error is RegistryUnavailable, marked retryable."""
        Throttled.script = [(429, {"Retry-After": "1"})] * 3

        async def sleep(seconds: float) -> None:
            return None

        with serve_http(Throttled) as url:
            async with client(url, sleep=sleep, retry=RetryPolicy(attempts=3)) as registry:
                with pytest.raises(errors.RegistryUnavailable) as caught:
                    await registry.resolve(ImageRef.parse(f"{url.removeprefix('http://')}/a:v1"))
        assert caught.value.retryable is True
        assert "429" in str(caught.value) and "try again later" in str(caught.value)


class Schema1(QuietHandler):
    """Stand-in serving a Docker schema1 (signed) manifest, as old registries do."""

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.reply(200, b"{}")
            return
        body = json.dumps({"schemaVersion": 1, "name": "a", "tag": "v1", "fsLayers": []}).encode()
        self.reply(
            200, body, {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}
        )


class TestSchema1:
    async def test_schema1_is_refused(self):
        """A schema1 manifest is refused with UnsupportedMediaType and a way out."""
        with serve_http(Schema1) as url:
            async with client(url) as registry:
                with pytest.raises(errors.UnsupportedMediaType) as caught:
                    await registry.resolve(ImageRef.parse(f"{url.removeprefix('http://')}/a:v1"))
        assert "schema1 manifests are not supported" in str(caught.value)
        assert caught.value.retryable is False


class TestPollRequests:
    async def test_a_poll_does_not_retry_a_429_and_reports_retry_after(self):
        """A poll's request is sent once; the 429's Retry-After travels on the error."""
        Throttled.script = [(429, {"Retry-After": "120"})] * 2
        with serve_http(Throttled) as url:
            host = url.removeprefix("http://")
            registry = ConfiguredRegistry(RegistryEndpoint(host=host, url=url, insecure=True))
            with pytest.raises(errors.RegistryUnavailable) as caught:
                await registry.list_tags_if_changed(Repository(host, "a"), Validators())
        assert caught.value.retry_after == 120.0
        assert len(Throttled.script) == 1  # asked once: the poller backs off instead

    async def test_a_tag_check_without_validators_counts_as_changed(self):
        """A HEAD without Docker-Content-Digest or ETag (as Quay's) cannot prove "unchanged"."""

        class Bare(QuietHandler):
            def do_GET(self) -> None:
                self.reply(200, b"{}")

            def do_HEAD(self) -> None:
                self.reply(200, b"", {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

        with serve_http(Bare) as url:
            async with client(url) as registry:
                ref = ImageRef.parse(f"{url.removeprefix('http://')}/a:stable")
                check = await registry.check_tag(ref, digest=Digest.of(b"x"), etag='"sha256:x"')
        assert not check.unchanged
        assert check.digest is None
