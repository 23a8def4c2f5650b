"""``DistributionRegistry``: one OCI Distribution endpoint on ``httpx.AsyncClient``.

Every request goes through ``request``: a per-registry concurrency limit,
retries with exponential backoff on 429 / 5xx / connection errors honouring
``Retry-After``, and translation of httpx errors (they never leave this package).
Every manifest body is hashed and checked against the digest asked for and
against ``Docker-Content-Digest`` (distribution-spec "Pulling manifests").
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urljoin

import anyio
import httpcore
import httpx

from conveyor.core.errors import (
    DigestMismatch,
    InvalidDigest,
    InvalidInput,
    RegistryError,
    RegistryUnavailable,
    UnsupportedMediaType,
)
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.core.polling import TagCheck, TagListing, Validators
from conveyor.registry import _errors, manifests
from conveyor.registry._errors import parse_retry_after
from conveyor.registry.auth import RegistryAuth
from conveyor.registry.endpoints import RegistryEndpoint

# The spec asks registries to accept manifests of at least 4 MB; refuse bigger bodies.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Image configs are small JSON; cap them so a hostile registry cannot exhaust memory.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Page size asked for when listing tags (registries may ignore it, 2.8.2 does).
TAGS_PAGE_SIZE = 1000
# Connect fails fast; reads allow a slow registry to stream a big layer chunk.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
Sleep = Callable[[float], Awaitable[None]]

# httpcore reads at most 64 KiB per call (a class constant), while asyncio
# receives up to 256 KiB per socket read: every bigger read was split, and its
# rest copied, into 64 KiB pieces, each with its own timeout scope, h11 event,
# hash update and upload write. Reading up to 256 KiB cuts that per-chunk work
# by about a quarter of the client's CPU when streaming layers; a read is still
# bounded by asyncio's 256 KiB, so memory stays bounded per transfer.
STREAM_READ_BYTES = 256 * 1024
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = max(
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES, STREAM_READ_BYTES
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry a failed request."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based); Retry-After wins, capped."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return float(min(self.base_delay * (2**attempt), self.max_delay))


# Chunk size once a registry refused a monolithic upload (and no size was set).
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
# Answers to a monolithic blob PUT that mean "send it in chunks": 413 Content
# Too Large (request-size limits, e.g. in front of a registry) and 405.
MONOLITHIC_REFUSED = frozenset({405, 413})


class MonolithicRefused(RegistryError):
    """The registry refused a blob in one request; the copy retries it in chunks."""


class _Slicer:
    """Cuts an async byte stream into consecutive pieces of exact lengths."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    async def take(self, length: int) -> AsyncIterator[bytes]:
        while length > 0:
            if not self._rest:
                try:
                    self._rest = await anext(self._chunks)
                except StopAsyncIteration:
                    return
            piece, self._rest = self._rest[:length], self._rest[length:]
            length -= len(piece)
            yield piece

    async def finish(self) -> None:
        """Drain the stream (runs its end-of-stream checks); extra bytes are an error."""
        async for extra in self._chunks:
            if extra:
                raise InvalidInput("the blob stream is longer than its descriptor's size")


def _append_query(url: str, **params: str) -> str:
    query = str(httpx.QueryParams(params))
    return f"{url}{'&' if '?' in url else '?'}{query}"


class DistributionRegistry:
    """One registry endpoint with one set of credentials (implements ``core.ports.Registry``).

    Use as an async context manager, or call ``aclose()``.
    """

    def __init__(
        self,
        endpoint: RegistryEndpoint,
        *,
        max_concurrency: int = 8,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = anyio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        # Blobs larger than this go up in PATCH chunks of this size (None: one
        # streamed PUT), and every blob once the registry refused a single PUT.
        self.chunk_size = chunk_size
        self.monolithic_refused = False
        self.auth = RegistryAuth(
            endpoint.credentials, registry=endpoint.host, token_flow=endpoint.token_flow
        )
        ssl_context: ssl.SSLContext | bool = True
        if endpoint.insecure:
            ssl_context = False
        elif endpoint.ca_file:
            try:
                ssl_context = ssl.create_default_context(cafile=endpoint.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidInput(
                    f"registry {endpoint.host}: tls.ca_file '{endpoint.ca_file}' is not a readable "
                    f"PEM CA bundle ({exc})"
                ) from exc
        self._http = httpx.AsyncClient(
            auth=self.auth,
            verify=ssl_context,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max_concurrency * 2, max_keepalive_connections=8),
            headers={"User-Agent": "conveyor"},
            follow_redirects=True,
        )
        self._limit = anyio.Semaphore(max_concurrency)
        self._retry = retry
        self._sleep = sleep
        self._pinged = False
        self._chunk_min: dict[str, int] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"DistributionRegistry({self.endpoint!r})"

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/v2/name/tags/list``."""
        return f"{self.endpoint.url}{path}"

    # -- the one way out ----------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        ok: Sequence[int] = (200,),
        retry: bool = True,
    ) -> httpx.Response:
        """Send one request (body read); retry transient failures; raise ours on other status.

        ``ok`` lists the statuses handed back to the caller; any other status
        becomes a RegistryError subclass naming the registry and ``what``.
        """
        if not self._pinged:
            await self.ping()
        response = await self._send(
            method, url, what=what, headers=headers, content=content, params=params, retry=retry
        )
        if response.status_code not in ok:
            raise self.error(response, what=what)
        return response

    def error(self, response: httpx.Response, *, what: str) -> RegistryError:
        """The Conveyor error for a failed response."""
        return _errors.from_response(
            response,
            registry=self.endpoint.host,
            what=what,
            authenticated=self.auth.authenticated,
        )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        attempts = self._retry.attempts if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                async with self._limit:
                    request = self._http.build_request(
                        method, url, headers=headers, content=content, params=params
                    )
                    response = await self._http.send(request, stream=stream)
            except RegistryUnavailable as unavailable:  # from the auth flow: its token service
                if last:
                    raise
                await self._sleep(self._retry.delay(attempt, unavailable.retry_after))
                continue
            except httpx.HTTPError as exc:
                error = _errors.from_transport(exc, registry=self.endpoint.host, what=what)
                if last or not error.retryable:
                    raise error from exc
                await self._sleep(self._retry.delay(attempt, None))
                continue
            if response.status_code not in RETRY_STATUSES or last:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            await response.aclose()
            await self._sleep(self._retry.delay(attempt, retry_after))
        raise AssertionError("unreachable: the last attempt returns or raises")

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, what: str, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response with status 200 (retried like ``request`` before the body)."""
        if not self._pinged:
            await self.ping()
        response = await self._send(method, url, what=what, headers=headers, stream=True)
        try:
            if response.status_code != 200:
                await response.aread()
                raise self.error(response, what=what)
            yield response
        except httpx.HTTPError as exc:
            raise _errors.from_transport(exc, registry=self.endpoint.host, what=what) from exc
        finally:
            await response.aclose()

    async def ping(self) -> None:
        """``GET /v2/``: check the API version and learn the authentication scheme."""
        self._pinged = True
        response = await self._send("GET", self.url("/v2/"), what=f"checking {self.endpoint.host}")
        if response.status_code not in (200, 401):
            raise self.error(response, what=f"checking the API of {self.endpoint.host}")

    # -- manifests ----------------------------------------------------------

    async def fetch_manifest(
        self, repository: Repository, reference: str | Digest
    ) -> manifests.Manifest:
        """GET a manifest by tag or digest; its body is hashed and checked.

        Raises ManifestUnknown, RepositoryUnknown, DigestMismatch (body differs
        from the digest asked for or from ``Docker-Content-Digest``),
        UnsupportedMediaType (schema1 or unknown type).
        """
        where = (
            f"{repository}:{reference}"
            if isinstance(reference, str)
            else f"{repository}@{reference}"
        )
        response = await self.request(
            "GET",
            self.url(f"/v2/{repository.name}/manifests/{reference}"),
            what=f"fetching manifest {where}",
            headers={"Accept": manifests.ACCEPT},
        )
        raw = response.content
        if len(raw) > MAX_MANIFEST_BYTES:
            raise UnsupportedMediaType(
                f"{where}: manifest of {len(raw)} bytes exceeds {MAX_MANIFEST_BYTES}",
                registry=self.endpoint.host,
            )
        digest = self._verify(raw, where=where, asked=reference, header=response.headers)
        return manifests.parse_manifest(
            raw,
            content_type=response.headers.get("Content-Type", ""),
            digest=digest,
            where=where,
        )

    def _verify(
        self, raw: bytes, *, where: str, asked: str | Digest, header: Mapping[str, str]
    ) -> Digest:
        algorithm = asked.algorithm if isinstance(asked, Digest) else "sha256"
        actual = Digest.of(raw, algorithm)
        if isinstance(asked, Digest) and actual != asked:
            raise DigestMismatch(
                f"{where}: the registry {self.endpoint.host} sent a manifest whose sha256 is "
                f"{actual}, not the digest asked for; refusing it",
                registry=self.endpoint.host,
            )
        claimed = header.get("Docker-Content-Digest")
        if claimed:
            try:
                claimed_digest = Digest.parse(claimed)
            except InvalidDigest as exc:
                raise DigestMismatch(
                    f"{where}: Docker-Content-Digest '{claimed[:80]}' is not a digest",
                    registry=self.endpoint.host,
                ) from exc
            if Digest.of(raw, claimed_digest.algorithm) != claimed_digest:
                raise DigestMismatch(
                    f"{where}: the manifest body hashes to {actual} but the registry "
                    f"{self.endpoint.host} says Docker-Content-Digest "
                    f"{claimed_digest}; refusing it",
                    registry=self.endpoint.host,
                )
        return actual

    async def resolve(self, ref: ImageRef) -> PinnedImage:
        """The digest a tag (or digest) names now, from the hashed manifest body."""
        manifest = await self.fetch_manifest(ref.repository, ref.digest or ref.reference)
        return PinnedImage(repository=ref.repository, digest=manifest.digest, tag=ref.tag)

    async def push_manifest(
        self, repository: Repository, manifest: manifests.Manifest, *, reference: str | None = None
    ) -> httpx.Response:
        """PUT the exact manifest bytes under a tag, or under its digest when no tag is given."""
        target = reference or str(manifest.digest)
        response = await self.request(
            "PUT",
            self.url(f"/v2/{repository.name}/manifests/{target}"),
            what=f"pushing manifest {repository}:{target}",
            headers={"Content-Type": manifest.media_type},
            content=manifest.raw,
            ok=(200, 201, 202),
        )
        claimed = response.headers.get("Docker-Content-Digest")
        if claimed and claimed != str(manifest.digest):
            raise DigestMismatch(
                f"{repository}:{target}: {self.endpoint.host} stored the manifest as {claimed}, "
                f"not {manifest.digest}",
                registry=self.endpoint.host,
            )
        return response

    async def retag(self, image: PinnedImage, tag: str) -> PinnedImage:
        """Point ``tag`` at exactly this digest (same bytes, new tag) in the same repository."""
        manifest = await self.fetch_manifest(image.repository, image.digest)
        await self.push_manifest(image.repository, manifest, reference=tag)
        return PinnedImage(repository=image.repository, digest=image.digest, tag=tag)

    async def copy(
        self, image: PinnedImage, *, to: Repository, tag: str | None = None
    ) -> PinnedImage:
        """Copy exactly this digest (every platform) to another repository of this registry.

        Blobs are mounted, not transferred; the result has the same digest
        (checked). For copies between registries use ``copy.copy_image``.
        """
        from conveyor.registry import copy  # copy builds on this module

        result = await copy.copy_image(self, image, destination=self, to=to, tag=tag)
        return result.image

    # -- tags ---------------------------------------------------------------

    async def list_tags(
        self, repository: Repository, *, page_size: int = TAGS_PAGE_SIZE
    ) -> list[str]:
        """Every tag, de-duplicated, in registry order.

        Follows ``Link: <...>; rel="next"``; when a full page comes without a
        Link it asks again with ``last=`` and stops once a page brings nothing
        new (registry 2.8.2 ignores ``n`` and ``last`` and returns everything).
        """
        tags, _, _ = await self._tag_pages(repository, page_size=page_size)
        return tags

    async def list_tags_if_changed(
        self,
        repository: Repository,
        validators: Validators,
        *,
        page_size: int = TAGS_PAGE_SIZE,
    ) -> TagListing:
        """The tags, or ``tags=None`` when the first page answers 304 to ``validators``.

        The first page's ``ETag`` / ``Last-Modified`` come back as the
        validators for next time, but only when the list fits in one page: a
        304 on the first page says nothing about the pages after it, so a
        paginated list is read in full every time. A registry that sends no
        validators (registry 2.8.2 on tags/list) gets a plain GET every time.
        """
        tags, first, pages = await self._tag_pages(
            repository, page_size=page_size, conditional=validators.request_headers()
        )
        if first.status_code == 304:
            # RFC 9110 15.4.5: a 304 carries the validators a 200 would have carried.
            renewed = Validators(
                etag=first.headers.get("ETag", validators.etag),
                last_modified=first.headers.get("Last-Modified", validators.last_modified),
            )
            return TagListing(tags=None, validators=renewed)
        fresh = Validators()
        if pages == 1:
            fresh = Validators(
                etag=first.headers.get("ETag"), last_modified=first.headers.get("Last-Modified")
            )
        return TagListing(tags=tuple(tags), validators=fresh)

    async def _tag_pages(
        self,
        repository: Repository,
        *,
        page_size: int,
        conditional: Mapping[str, str] | None = None,
    ) -> tuple[list[str], httpx.Response, int]:
        """Every tag, the first page's response and the number of pages read.

        ``conditional`` headers go on the first request only; when it answers
        304 no page is read (the tags are empty, the count is 0).
        """
        url: str | None = self.url(f"/v2/{repository.name}/tags/list?n={page_size}")
        seen: dict[str, None] = {}
        visited: set[str] = set()
        first: httpx.Response | None = None
        while url and url not in visited:
            visited.add(url)
            response = await self.request(
                "GET",
                url,
                what=f"listing tags of {repository}",
                headers=conditional if first is None else None,
                ok=(200, 304) if first is None and conditional else (200,),
            )
            if first is None:
                first = response
                if response.status_code == 304:
                    return [], response, 0
            try:
                page = [str(tag) for tag in (response.json().get("tags") or [])]
            except (ValueError, AttributeError) as exc:
                raise RegistryError(
                    f"listing tags of {repository}: {self.endpoint.host} sent no tag list",
                    registry=self.endpoint.host,
                ) from exc
            new = [tag for tag in page if tag not in seen]
            seen.update(dict.fromkeys(new))
            next_link = response.links.get("next", {}).get("url")
            if next_link:
                url = urljoin(str(response.url), next_link)
            elif new and len(page) >= page_size:
                url = (
                    self.url(f"/v2/{repository.name}/tags/list")
                    + "?"
                    + str(httpx.QueryParams({"n": str(page_size), "last": page[-1]}))
                )
            else:
                url = None
        assert first is not None, "the first page is always requested"
        return list(seen), first, len(visited)

    async def check_tag(self, ref: ImageRef, *, digest: Digest, etag: str | None) -> TagCheck:
        """Whether the tag still names ``digest``: one HEAD, conditional on ``etag``.

        304 (the manifest's ETag still matches ``If-None-Match``) means
        unchanged. A 200 is compared through ``Docker-Content-Digest``, or
        through a strong ``ETag`` equal to the one sent when the digest
        header is missing; anything else counts as changed, and the caller
        reads (and hashes) the manifest. Distribution (2.x and 3.x), Harbor
        and the GitLab registry answer ``ETag: "<digest>"`` and 304 on a
        match; a HEAD is not counted as a pull by Docker Hub.
        """
        if ref.tag is None:
            raise InvalidInput(f"{ref}: checking a tag needs a tag")
        headers = {"Accept": manifests.ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        response = await self.request(
            "HEAD",
            self.url(f"/v2/{ref.repository.name}/manifests/{ref.tag}"),
            what=f"checking tag {ref.repository}:{ref.tag}",
            headers=headers,
            ok=(200, 304),
        )
        current = response.headers.get("ETag")
        if response.status_code == 304:
            return TagCheck(unchanged=True, etag=current or etag)
        try:
            claimed = Digest.parse(response.headers.get("Docker-Content-Digest", ""))
        except InvalidDigest:
            claimed = None  # missing or not a digest: decided by the ETag, else read
        if claimed is not None:
            unchanged = claimed == digest
        else:
            unchanged = bool(etag and current and not current.startswith("W/") and current == etag)
        return TagCheck(unchanged=unchanged, etag=current, digest=claimed)

    # -- blobs --------------------------------------------------------------

    async def has_blob(self, repository: Repository, digest: Digest) -> bool:
        """True when the blob exists in the repository (HEAD)."""
        response = await self.request(
            "HEAD",
            self.url(f"/v2/{repository.name}/blobs/{digest}"),
            what=f"checking blob {digest.short} in {repository}",
            ok=(200, 404),
        )
        return response.status_code == 200

    async def fetch_blob(self, repository: Repository, digest: Digest, *, limit: int) -> bytes:
        """A small blob (e.g. a config), hashed and checked."""
        response = await self.request(
            "GET",
            self.url(f"/v2/{repository.name}/blobs/{digest}"),
            what=f"fetching blob {digest.short} from {repository}",
        )
        body = response.content
        if len(body) > limit:
            raise UnsupportedMediaType(
                f"blob {digest} in {repository} is {len(body)} bytes; more than {limit}",
                registry=self.endpoint.host,
            )
        if Digest.of(body, digest.algorithm) != digest:
            raise DigestMismatch(
                f"blob {digest} from {repository} on {self.endpoint.host} does not hash to its "
                "digest; refusing it",
                registry=self.endpoint.host,
            )
        return body

    async def mount_blob(
        self, repository: Repository, digest: Digest, *, source: Repository
    ) -> bool:
        """Cross-repository mount; False when the registry declined (upload needed)."""
        response = await self.request(
            "POST",
            self.url(f"/v2/{repository.name}/blobs/uploads/"),
            what=f"mounting blob {digest.short} from {source} into {repository}",
            params={"mount": str(digest), "from": source.name},
            ok=(201, 202),
        )
        if response.status_code == 201:
            return True
        await self._cancel_upload(response)
        return False

    async def _cancel_upload(self, response: httpx.Response) -> None:
        location = response.headers.get("Location")
        if not location:
            return
        try:
            await self._send("DELETE", urljoin(str(response.url), location), what="", retry=False)
        except RegistryError:
            return  # an abandoned session is garbage-collected by the registry

    async def start_upload(self, repository: Repository) -> str:
        """POST an upload session; its absolute Location URL (``OCI-Chunk-Min-Length`` noted)."""
        response = await self.request(
            "POST",
            self.url(f"/v2/{repository.name}/blobs/uploads/"),
            what=f"starting an upload to {repository}",
            ok=(202,),
        )
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(
                f"{self.endpoint.host} opened an upload to {repository} without a Location",
                registry=self.endpoint.host,
            )
        absolute = str(urljoin(str(response.url), location))
        minimum = response.headers.get("OCI-Chunk-Min-Length", "")
        if minimum.isdigit():
            self._chunk_min[absolute] = int(minimum)
        return absolute

    async def push_blob(self, repository: Repository, content: bytes) -> Digest:
        """Upload a small blob monolithically (POST then PUT) unless it exists."""
        digest = Digest.of(content)
        if await self.has_blob(repository, digest):
            return digest
        location = await self.start_upload(repository)
        await self.request(
            "PUT",
            _append_query(location, digest=str(digest)),
            what=f"uploading blob {digest.short} to {repository}",
            headers={"Content-Type": "application/octet-stream"},
            content=content,
            ok=(201, 204),
        )
        return digest

    def chunked(self, size: int) -> bool:
        """True when a blob of ``size`` bytes goes up in PATCH chunks, not one PUT."""
        return self.monolithic_refused or (self.chunk_size is not None and size > self.chunk_size)

    def refuse_monolithic(self) -> None:
        """The registry refused a monolithic PUT: every later blob goes up in chunks."""
        self.monolithic_refused = True

    async def patch_stream(
        self,
        location: str,
        *,
        digest: Digest,
        size: int,
        chunks: AsyncIterator[bytes],
        what: str,
    ) -> None:
        """Upload in ``PATCH`` chunks of ``chunk_size`` bytes, then close with ``PUT ?digest=``.

        Distribution spec "Pushing a blob in chunks": each PATCH carries
        ``Content-Range: <start>-<end>`` (inclusive) and answers 202 with the
        next Location; a registry's ``OCI-Chunk-Min-Length`` raises the chunk
        size. Each chunk is streamed from ``chunks`` as it comes (bounded
        memory); not retried (the caller retries the whole blob).
        """
        chunk = max(self.chunk_size or DEFAULT_CHUNK_SIZE, self._chunk_min.get(location, 0))
        reader = _Slicer(chunks)
        offset = 0
        while offset < size:
            length = min(chunk, size - offset)
            response = await self._send_streamed(
                "PATCH",
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                content=reader.take(length),
                what=what,
            )
            if response.status_code != 202:
                raise self.error(response, what=what)
            location = str(urljoin(str(response.url), response.headers.get("Location", location)))
            offset += length
        await reader.finish()  # the digest check of ``chunks`` runs at its end
        response = await self._send_streamed(
            "PUT",
            _append_query(location, digest=str(digest)),
            headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
            content=b"",
            what=what,
        )
        if response.status_code not in (201, 204):
            raise self.error(response, what=what)

    async def _send_streamed(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: AsyncIterator[bytes] | bytes,
        what: str,
    ) -> httpx.Response:
        request = self._http.build_request(method, url, headers=headers, content=content)
        try:
            async with self._limit:
                response = await self._http.send(request)
        except httpx.HTTPError as exc:
            # A DigestMismatch raised by ``content`` is ours and propagates as is.
            raise _errors.from_transport(exc, registry=self.endpoint.host, what=what) from exc
        return response

    async def put_stream(
        self,
        location: str,
        *,
        digest: Digest,
        size: int,
        chunks: AsyncIterator[bytes],
        what: str,
    ) -> None:
        """Finish an upload with one streamed PUT (bounded memory, not retried)."""
        response = await self._send_streamed(
            "PUT",
            _append_query(location, digest=str(digest)),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=chunks,
            what=what,
        )
        if response.status_code in MONOLITHIC_REFUSED:
            raise MonolithicRefused(
                f"{what}: {self.endpoint.host} refused a single-request upload "
                f"(HTTP {response.status_code})",
                registry=self.endpoint.host,
            )
        if response.status_code not in (201, 204):
            raise self.error(response, what=what)
