"""Manifest media types and parsing (pure: bytes in, values out).

Media types from the OCI image-spec v1.1 and distribution's
``docs/spec/manifest-v2-2.md``. Docker schema1 is refused: it is signed per
registry, so its digest cannot survive a copy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.core.errors import UnsupportedMediaType
from conveyor.core.images import Digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
# Sent on every manifest request: registry 2.8.2 answers a false 404
# MANIFEST_UNKNOWN when the stored type is missing from Accept (FORMATS.md 1.3).
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
# The empty JSON blob ``{}`` of image-spec "Guidance for an empty descriptor".
EMPTY_BLOB = b"{}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    """os/architecture[/variant] of an image."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """A content descriptor: what a manifest points at."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The descriptor as OCI JSON."""
        out: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform:
            platform = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                platform["variant"] = self.platform.variant
            out["platform"] = platform
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A parsed manifest or index, with the exact bytes and their (verified) digest."""

    media_type: str
    digest: Digest
    raw: bytes
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        """True for an OCI index or a Docker manifest list."""
        return self.media_type in INDEX_TYPES

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config and layers: every blob an image manifest needs."""
        return ((self.config,) if self.config else ()) + self.layers


def parse_descriptor(data: object, *, where: str) -> Descriptor:
    """One descriptor from JSON; raises UnsupportedMediaType when malformed."""
    if not isinstance(data, dict):
        raise UnsupportedMediaType(f"{where}: descriptor is not a JSON object")
    try:
        platform_data = data.get("platform")
        platform = None
        if isinstance(platform_data, dict):
            platform = Platform(
                os=str(platform_data.get("os", "")),
                architecture=str(platform_data.get("architecture", "")),
                variant=platform_data.get("variant"),
            )
        return Descriptor(
            media_type=str(data["mediaType"]),
            digest=Digest.parse(str(data["digest"])),
            size=int(data["size"]),
            platform=platform,
            artifact_type=data.get("artifactType"),
            annotations=dict(data.get("annotations") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UnsupportedMediaType(f"{where}: malformed descriptor ({exc})") from exc


def parse_manifest(raw: bytes, *, content_type: str, digest: Digest, where: str) -> Manifest:
    """Parse manifest bytes whose digest was already verified.

    The media type is the body's ``mediaType`` when present, else the
    response's ``Content-Type``. Raises UnsupportedMediaType for schema1,
    unknown types and bodies that are not manifests.
    """
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UnsupportedMediaType(f"{where}: manifest is not JSON") from exc
    if not isinstance(data, dict):
        raise UnsupportedMediaType(f"{where}: manifest is not a JSON object")
    media_type = str(data.get("mediaType") or content_type.split(";")[0].strip())
    if media_type in SCHEMA1 or data.get("schemaVersion") == 1:
        raise UnsupportedMediaType(
            f"{where}: Docker schema1 manifests are not supported (their digest changes on "
            "every copy); rebuild or push the image with a current client (OCI or schema2)"
        )
    if media_type not in INDEX_TYPES + IMAGE_TYPES:
        raise UnsupportedMediaType(
            f"{where}: unsupported manifest media type '{media_type}'; expected one of {ACCEPT}"
        )
    subject = data.get("subject")
    common = {
        "media_type": media_type,
        "digest": digest,
        "raw": raw,
        "subject": parse_descriptor(subject, where=where) if subject else None,
        "artifact_type": data.get("artifactType"),
        "annotations": dict(data.get("annotations") or {}),
    }
    if media_type in INDEX_TYPES:
        children = tuple(
            parse_descriptor(item, where=where) for item in data.get("manifests") or ()
        )
        return Manifest(manifests=children, **common)  # type: ignore[arg-type]
    if "config" not in data:
        raise UnsupportedMediaType(f"{where}: image manifest without a config descriptor")
    return Manifest(
        config=parse_descriptor(data["config"], where=where),
        layers=tuple(parse_descriptor(item, where=where) for item in data.get("layers") or ()),
        **common,  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """What Conveyor reads from an image config: created time, labels, platform."""

    created: str | None
    labels: Mapping[str, str]
    platform: Platform | None


def parse_config(raw: bytes) -> ImageConfig:
    """Read an OCI / Docker image config blob (tolerant: missing fields are None/empty)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return ImageConfig(created=None, labels={}, platform=None)
    if not isinstance(data, dict):
        return ImageConfig(created=None, labels={}, platform=None)
    inner = data.get("config") or {}
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    platform = None
    if data.get("os") and data.get("architecture"):
        platform = Platform(
            os=str(data["os"]), architecture=str(data["architecture"]), variant=data.get("variant")
        )
    return ImageConfig(created=data.get("created"), labels=dict(labels or {}), platform=platform)
