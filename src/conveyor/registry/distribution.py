"""An OCI Distribution client on httpx: resolve, list tags, copy by digest within a registry.

Built to the distribution spec (v1.1.1): every manifest is fetched with the
full Accept list (2.8.2 answers a false 404 without it), every body is hashed
and compared with the digest asked for and with Docker-Content-Digest, and a
copy within one registry mounts blobs across repositories, so no layer byte
passes through Conveyor. Each call uses its own connection pool, so a client
may be used from any event loop.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Generator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from conveyor.core.credentials import Credentials
from conveyor.core.errors import RegistryError
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[0], MANIFEST_TYPES[2]
SCHEMA1_TYPES = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
# Error bodies are cut before they reach a message or a log.
MAX_ERROR_TEXT = 300


class RegistryUnauthorized(RegistryError):
    """The registry refused the credentials; check the registry's credentials in the config."""

    retryable = False


class ManifestUnknown(RegistryError):
    """The registry has no such manifest (tag or digest) in that repository."""

    retryable = False


class DigestMismatch(RegistryError):
    """The registry's content does not hash to the digest it was asked for; refusing it."""

    retryable = False


class UnsupportedManifest(RegistryError):
    """The manifest's media type is not supported."""

    retryable = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEndpoint:
    """How to reach one registry: the host image references use, and its base URL."""

    host: str
    url: str
    credentials: Credentials | None = None
    ca_file: str | None = None
    insecure: bool = False


@dataclass
class _TokenAuth(httpx.Auth):
    """Basic, or Bearer tokens from the WWW-Authenticate challenge (distribution auth spec)."""

    credentials: Credentials | None
    tokens: dict[str, str] = field(default_factory=dict)
    requires_response_body = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scope_key = request.extensions.get("conveyor_scope", "")
        if scope_key in self.tokens:
            request.headers["Authorization"] = self.tokens[scope_key]
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("www-authenticate", "")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and self.credentials is not None:
            request.headers["Authorization"] = _basic(self.credentials)
            yield request
            return
        if scheme.lower() != "bearer":
            return
        fields = _parse_challenge(params)
        query: list[tuple[str, str | int | float | bool | None]] = [
            ("service", fields.get("service", ""))
        ]
        for scope in filter(None, (fields.get("scope", "") + " " + scope_key).split(" ")):
            query.append(("scope", scope))
        token_request = httpx.Request("GET", fields.get("realm", ""), params=query)
        if self.credentials is not None:
            token_request.headers["Authorization"] = _basic(self.credentials)
        token_response = yield token_request
        if token_response.status_code != 200:
            return
        body = json.loads(token_response.read() or b"{}")
        token = body.get("token") or body.get("access_token")
        if not token:
            return
        self.tokens[scope_key] = f"Bearer {token}"
        request.headers["Authorization"] = self.tokens[scope_key]
        yield request


def _basic(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password.reveal()}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _parse_challenge(params: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in params.split('",'):
        name, _, value = part.partition("=")
        fields[name.strip().lower()] = value.strip().strip('"')
    return fields


class DistributionRegistry:
    """core.ports.Registry for one OCI Distribution endpoint."""

    def __init__(self, endpoint: RegistryEndpoint, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self._auth = _TokenAuth(endpoint.credentials)
        self._timeout = timeout

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        verify: bool | str = True
        if self.endpoint.insecure:
            verify = False
        elif self.endpoint.ca_file:
            verify = self.endpoint.ca_file
        async with httpx.AsyncClient(
            base_url=self.endpoint.url,
            auth=self._auth,
            verify=verify,
            timeout=self._timeout,
            follow_redirects=True,
        ) as client:
            yield client

    async def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        scope: str,
        what: str,
        **kwargs: Any,  # noqa: ANN401 - passed through to httpx
    ) -> httpx.Response:
        try:
            response = await client.request(
                method, path, extensions={"conveyor_scope": scope}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"{self.endpoint.host}: {what} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code == 401:
            raise RegistryUnauthorized(
                f"{self.endpoint.host} refused the credentials for {what} (401); "
                "check the registry's credentials in the config"
            )
        if response.status_code == 403:
            raise RegistryUnauthorized(f"{self.endpoint.host}: {what} is forbidden (403)")
        return response

    def _fail(self, response: httpx.Response, what: str) -> RegistryError:
        text = response.text[:MAX_ERROR_TEXT]
        kind = RegistryError
        if response.status_code == 404:
            kind = ManifestUnknown
        error = kind(f"{self.endpoint.host}: {what}: HTTP {response.status_code} {text}".strip())
        return error

    async def fetch_manifest(
        self, repository: Repository, reference: str
    ) -> tuple[bytes, str, Digest]:
        """The manifest bytes, media type and digest, hash-checked."""
        async with self._client() as client:
            return await self._manifest(client, repository, reference)

    async def _manifest(
        self, client: httpx.AsyncClient, repository: Repository, reference: str
    ) -> tuple[bytes, str, Digest]:
        what = f"manifest {repository.name}:{reference}"
        response = await self._request(
            client,
            "GET",
            f"/v2/{repository.name}/manifests/{reference}",
            scope=f"repository:{repository.name}:pull",
            what=what,
            headers={"Accept": ACCEPT},
        )
        if response.status_code != 200:
            raise self._fail(response, what)
        body = response.content
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type in SCHEMA1_TYPES:
            raise UnsupportedManifest(f"{what} is Docker schema 1, which Conveyor refuses")
        digest = Digest.of(body)
        header = response.headers.get("docker-content-digest")
        if header is not None and Digest.parse(header) != digest:
            raise DigestMismatch(f"{what}: body hashes to {digest}, registry says {header}")
        if reference.startswith("sha256:") and Digest.parse(reference) != digest:
            raise DigestMismatch(f"{what}: body hashes to {digest}, not the digest asked for")
        return body, media_type, digest

    async def resolve(self, ref: ImageRef) -> PinnedImage:
        repository = Repository(self.endpoint.host, ref.repository.name)
        _, _, digest = await self.fetch_manifest(repository, ref.reference)
        return PinnedImage(repository=ref.repository, digest=digest, tag=ref.tag)

    async def list_tags(self, repository: Repository) -> Sequence[str]:
        tags: dict[str, None] = {}
        path: str | None = f"/v2/{repository.name}/tags/list?n=1000"
        async with self._client() as client:
            while path:
                what = f"tags of {repository.name}"
                response = await self._request(
                    client, "GET", path, scope=f"repository:{repository.name}:pull", what=what
                )
                if response.status_code == 404:
                    return []
                if response.status_code != 200:
                    raise self._fail(response, what)
                for tag in response.json().get("tags") or []:
                    tags.setdefault(tag)
                link = response.links.get("next", {}).get("url")
                path = urljoin(path, link) if link and link != path else None
        return list(tags)

    async def copy(
        self, image: PinnedImage, *, to: Repository, tag: str | None = None
    ) -> PinnedImage:
        if to.registry != image.repository.registry:
            raise RegistryError(
                f"copy from {image.repository.registry} to {to.registry}: copying between "
                "registries is not supported by this client yet"
            )
        scope = f"repository:{to.name}:push,pull repository:{image.repository.name}:pull"
        async with self._client() as client:
            await self._copy_manifest(client, image.repository, to, image.digest, scope)
            body, media_type, _ = await self._manifest(client, image.repository, str(image.digest))
            reference = tag or str(image.digest)
            what = f"push {to.name}:{reference}"
            response = await self._request(
                client,
                "PUT",
                f"/v2/{to.name}/manifests/{reference}",
                scope=scope,
                what=what,
                content=body,
                headers={"Content-Type": media_type},
            )
            if response.status_code not in (200, 201):
                raise self._fail(response, what)
            pushed = response.headers.get("docker-content-digest")
            if pushed is not None and Digest.parse(pushed) != image.digest:
                raise DigestMismatch(f"{what}: registry stored {pushed}, not {image.digest}")
        return PinnedImage(repository=to, digest=image.digest, tag=tag)

    async def _copy_manifest(
        self,
        client: httpx.AsyncClient,
        source: Repository,
        to: Repository,
        digest: Digest,
        scope: str,
    ) -> None:
        body, media_type, _ = await self._manifest(client, source, str(digest))
        document = json.loads(body)
        if media_type in INDEX_TYPES:
            for child in document.get("manifests", []):
                child_digest = Digest.parse(child["digest"])
                await self._copy_manifest(client, source, to, child_digest, scope)
                child_body, child_type, _ = await self._manifest(client, source, str(child_digest))
                if source != to:
                    await self._put_manifest(
                        client, to, child_body, child_type, child_digest, scope
                    )
            return
        if source == to:
            return
        blobs = [document.get("config", {}), *document.get("layers", [])]
        for blob in blobs:
            if blob.get("digest"):
                await self._mount(client, source, to, blob["digest"], scope)

    async def _put_manifest(
        self,
        client: httpx.AsyncClient,
        to: Repository,
        body: bytes,
        media_type: str,
        digest: Digest,
        scope: str,
    ) -> None:
        what = f"push {to.name}@{digest}"
        response = await self._request(
            client,
            "PUT",
            f"/v2/{to.name}/manifests/{digest}",
            scope=scope,
            what=what,
            content=body,
            headers={"Content-Type": media_type},
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, what)

    async def _mount(
        self,
        client: httpx.AsyncClient,
        source: Repository,
        to: Repository,
        digest: str,
        scope: str,
    ) -> None:
        what = f"mount {digest} from {source.name} into {to.name}"
        exists = await self._request(
            client, "HEAD", f"/v2/{to.name}/blobs/{digest}", scope=scope, what=what
        )
        if exists.status_code == 200:
            return
        response = await self._request(
            client,
            "POST",
            f"/v2/{to.name}/blobs/uploads/",
            params={"mount": digest, "from": source.name},
            scope=scope,
            what=what,
        )
        if response.status_code != 201:
            raise RegistryError(
                f"{self.endpoint.host}: {what}: the registry did not mount the blob "
                f"(HTTP {response.status_code})"
            )
