"""Conditional requests of pollers against the real registry 2.8.2, with and without a stand-in.

Registry 2.8.2 sends no ``ETag`` or ``Last-Modified`` on ``/v2/<name>/tags/list``
(``registry/handlers/tags.go``), but does send ``ETag: "<digest>"`` on manifests
and answers ``304`` to a matching ``If-None-Match`` (``registry/handlers/manifests.go``).
To exercise validators on tag lists, ``ValidatingStandIn`` is a STAND-IN proxy in
front of the real registry that adds them to tags/list responses by RFC 9110:

- a strong ``ETag`` (8.8.3) that is the quoted SHA-256 of the representation, and a
  ``Last-Modified`` (8.8.2) that is when the proxy first served that representation
  (made to increase strictly, one second at least, so no change hides in one second);
- ``If-None-Match`` (13.1.2): ``*`` or a comma-separated list, compared weakly, answered
  ``304`` with the validators and no content; ``If-Modified-Since`` (13.1.3) only when
  no ``If-None-Match`` came (13.2.2).

Everything else (manifests, ``/v2/``) passes through to the registry unchanged, so
manifest checks meet 2.8.2's own conditional handling. What it leaves out: ranges,
``If-Match``/``If-Unmodified-Since``, caching, and validators on anything but tags/list.
"""

from __future__ import annotations

import email.utils
import hashlib
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from conveyor import wiring
from conveyor.config import loader
from conveyor.core.images import Digest, ImageRef, Repository
from conveyor.core.polling import Validators
from conveyor.engine.scheduler import Scheduler
from conveyor.registry.client import DistributionRegistry, RetryPolicy
from conveyor.registry.endpoints import RegistryEndpoint
from conveyor.service import queries
from conveyor.service.context import Services
from tests.service.conftest import Clock
from tests.support.registry import QuietHandler, RegistryProcess, serve_http

from .conftest import TestImages

FORWARDED_REQUEST_HEADERS = ("Accept", "Authorization", "If-None-Match", "If-Modified-Since")
FORWARDED_RESPONSE_HEADERS = (
    "Content-Type",
    "Docker-Content-Digest",
    "Docker-Distribution-Api-Version",
    "ETag",
    "Link",
    "WWW-Authenticate",
)


def _entity_tags(header: str) -> list[str]:
    return [part.strip().removeprefix("W/") for part in header.split(",") if part.strip()]


class ValidatingStandIn(QuietHandler):
    """STAND-IN proxy adding RFC 9110 validators to tags/list of the registry behind it."""

    upstream: ClassVar[str] = ""
    etags: ClassVar[bool] = True
    last_modified: ClassVar[bool] = True
    log: ClassVar[list[tuple[str, str, int]]] = []
    # tags/list path -> (strong ETag, Last-Modified timestamp) of the current representation
    seen: ClassVar[dict[str, tuple[str, float]]] = {}

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def _forward(self) -> None:
        headers = {
            name: value
            for name in FORWARDED_REQUEST_HEADERS
            if (value := self.headers.get(name)) is not None
        }
        path = self.path.split("?", 1)[0]
        is_tag_list = path.endswith("/tags/list")
        if is_tag_list:  # the registry ignores them; the stand-in decides
            headers.pop("If-None-Match", None)
            headers.pop("If-Modified-Since", None)
        upstream = httpx.request(self.command, self.upstream + self.path, headers=headers)
        reply = {
            name: upstream.headers[name]
            for name in FORWARDED_RESPONSE_HEADERS
            if name in upstream.headers
        }
        status, body = upstream.status_code, upstream.content
        if is_tag_list and status == 200:
            status, reply = self._validate(path, body, reply)
            if status == 304:
                body = b""
        type(self).log.append((self.command, path, status))
        self.reply(status, body, reply)

    def _validate(
        self, path: str, body: bytes, reply: dict[str, str]
    ) -> tuple[int, dict[str, str]]:
        etag = '"' + hashlib.sha256(body).hexdigest() + '"'
        known = self.seen.get(path)
        if known is None or known[0] != etag:
            stamp = float(int(time.time()))
            if known is not None:
                stamp = max(stamp, known[1] + 1)
            known = (etag, stamp)
            self.seen[path] = known
        if self.etags:
            reply["ETag"] = etag
        if self.last_modified:
            reply["Last-Modified"] = email.utils.formatdate(known[1], usegmt=True)
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            matched = if_none_match.strip() == "*" or etag in _entity_tags(if_none_match)
            return (304 if matched else 200), reply
        since = self.headers.get("If-Modified-Since")
        if since is not None and self.last_modified:
            try:
                when = email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return 200, reply  # an invalid date is ignored (13.1.3)
            if known[1] <= when:
                return 304, reply
        return 200, reply


@pytest.fixture
def standin(anonymous_registry: RegistryProcess) -> Iterator[type[ValidatingStandIn]]:
    """A fresh stand-in class (its own log and state) in front of the anonymous registry."""
    handler = type(
        "Validating",
        (ValidatingStandIn,),
        {"upstream": anonymous_registry.url, "log": [], "seen": {}},
    )
    with serve_http(handler) as url:
        handler.url = url  # type: ignore[attr-defined]
        yield handler


def _client(url: str) -> DistributionRegistry:
    endpoint = RegistryEndpoint(host=url.removeprefix("http://"), url=url, insecure=True)
    return DistributionRegistry(endpoint, retry=RetryPolicy(attempts=1))


class TestTagListValidators:
    @pytest.mark.parametrize("validator", ["etag", "last_modified"])
    async def test_an_unchanged_list_answers_304_and_a_new_tag_does_not(
        self, standin, anonymous_registry, images: TestImages, repo_name: str, validator: str
    ):
        """The validators of a tag list come back; 304 while unchanged, the new list after."""
        standin.etags = validator == "etag"
        standin.last_modified = validator == "last_modified"
        images.layout.push("single", f"{anonymous_registry.host}/{repo_name}:v1")
        async with _client(standin.url) as client:
            repository = Repository(client.endpoint.host, repo_name)
            first = await client.list_tags_if_changed(repository, Validators())
            assert first.tags == ("v1",)
            assert bool(first.validators.etag) == (validator == "etag")
            assert bool(first.validators.last_modified) == (validator == "last_modified")

            again = await client.list_tags_if_changed(repository, first.validators)
            assert again.not_modified
            assert again.validators == first.validators

            images.layout.push("single", f"{anonymous_registry.host}/{repo_name}:v2")
            changed = await client.list_tags_if_changed(repository, first.validators)
            assert changed.tags == ("v1", "v2")
            assert changed.validators != first.validators
        statuses = [status for _, path, status in standin.log if path.endswith("/tags/list")]
        assert statuses == [200, 304, 200]

    async def test_a_registry_without_validators_gets_plain_requests(
        self, anonymous_registry, images: TestImages, repo_name: str
    ):
        """Registry 2.8.2 sends no tag-list validators: every poll reads the list in full."""
        images.layout.push("single", f"{anonymous_registry.host}/{repo_name}:v1")
        async with _client(anonymous_registry.url) as client:
            repository = Repository(anonymous_registry.host, repo_name)
            first = await client.list_tags_if_changed(repository, Validators())
            assert first.tags == ("v1",)
            assert not first.validators
            # Even validators it never gave are ignored (2.8.2 has no conditional tags/list).
            made_up = Validators(etag='"x"', last_modified="Sun, 06 Nov 2044 08:49:37 GMT")
            again = await client.list_tags_if_changed(repository, made_up)
            assert again.tags == ("v1",)


class TestTagChecks:
    async def test_a_tag_check_is_a_head_answered_304_until_the_tag_moves(
        self, standin, anonymous_registry, images: TestImages, repo_name: str
    ):
        """2.8.2 answers If-None-Match on manifests itself; a moved tag is reported changed."""
        host = anonymous_registry.host
        first = Digest.parse(images.layout.push("single", f"{host}/{repo_name}:stable"))
        async with _client(standin.url) as client:
            ref = ImageRef(Repository(client.endpoint.host, repo_name), tag="stable")
            plain = await client.check_tag(ref, digest=first, etag=None)
            assert plain.unchanged
            assert plain.digest == first
            assert plain.etag == f'"{first}"'  # distribution's manifest ETag is the digest
            conditional = await client.check_tag(ref, digest=first, etag=plain.etag)
            assert conditional.unchanged

            second = Digest.parse(images.layout.push("layers", f"{host}/{repo_name}:stable"))
            moved = await client.check_tag(ref, digest=first, etag=plain.etag)
            assert not moved.unchanged
            assert moved.digest == second
        manifest_requests = [
            (method, status) for method, path, status in standin.log if "/manifests/" in path
        ]
        assert manifest_requests == [("HEAD", 200), ("HEAD", 304), ("HEAD", 200)]


CONFIG = """\
registries:
  main: {{url: "{url}", tls: {{insecure: true}}}}
environments:
  - name: test
sources:
  app:
    registry: main
    repository: {repository}
    policy: {{digest: {{tag: stable}}}}
pipelines:
  polled:
    environment: test
    source: {{artifact: app}}
    triggers:
      - poll: {{source: app, interval: 1m}}
    steps:
      - {{type: command, run: "true"}}
"""


def _services(tmp_path: Path, url: str, repository: str) -> Services:
    config = tmp_path / "conveyor.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(url=url, repository=repository)))
    definitions = loader.load(config)
    return Services(
        definitions=definitions,
        engine=wiring.open_database(f"sqlite:///{tmp_path / 'state.db'}"),
        registries=wiring.ConfiguredRegistries(
            definitions.registries, {}, wiring.default_registry_factory
        ),
        data_dir=tmp_path / "data",
        clock=Clock(),
    )


@pytest.mark.parametrize(
    "tag_list_validators", [True, False], ids=["standin-etag", "registry-2.8.2"]
)
def test_poller_skips_quiet_lists_and_fires_on_a_moved_tag(
    standin,
    anonymous_registry,
    images: TestImages,
    repo_name: str,
    tmp_path: Path,
    tag_list_validators: bool,
):
    """Digest policy over HTTP: quiet polls start nothing; a push under the same tag starts a run.

    With the stand-in's ETag the quiet polls get 304 on tags/list; without validators
    (the registry's own behaviour) they read the list; either way the followed tag is
    checked with a HEAD, conditional once its ETag is known, and a moved tag fires.
    """
    standin.etags = standin.last_modified = tag_list_validators
    host = anonymous_registry.host
    services = _services(tmp_path, standin.url, repo_name)
    clock = services.clock
    scheduler = Scheduler(services=services, owner="poller")

    def poll() -> list[tuple[str, int]]:
        standin.log.clear()
        clock.now += timedelta(minutes=2)  # type: ignore[attr-defined]
        scheduler.tick()
        return [(method, status) for method, path, status in standin.log if path != "/v2/"]

    first = images.layout.push("single", f"{host}/{repo_name}:stable")
    poll()
    quiet_list = 304 if tag_list_validators else 200
    # The first quiet check is a plain HEAD (the first poll's GET gave no manifest ETag).
    assert poll() == [("GET", quiet_list), ("HEAD", 200)]
    assert poll() == [("GET", quiet_list), ("HEAD", 304)]

    second = images.layout.push("layers", f"{host}/{repo_name}:stable")
    moved = poll()
    # The list is unchanged, the tag moved: HEAD says so, the manifest is read and hashed.
    assert moved[:3] == [("GET", quiet_list), ("HEAD", 200), ("GET", 200)]
    runs = queries.list_runs(services, pipeline="polled", status=None, limit=10)
    assert [r["digest"] for r in runs] == [second, first]
    assert poll()[-1] == ("HEAD", 304)  # the new manifest's ETag was kept
    scheduler.release()
    services.engine.dispose()
