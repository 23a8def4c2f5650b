"""Image references: parse once at the edge, then pass typed values.

A tag is only a way to find a digest; anything that deploys or copies takes a
``PinnedImage`` (repository plus digest), so the type checker keeps tags out.
Grammar from the OCI distribution spec (v1.1.1, "Pulling manifests").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from conveyor.core.errors import InvalidDigest, InvalidImageRef

# distribution-spec: <name> components, lowercase, separated by '/'.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_DIGEST_RE = re.compile(r"^(?P<algorithm>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
# Where a reference names no registry, docker's convention applies.
DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True, slots=True)
class Digest:
    """A content digest such as ``sha256:<64 hex>``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``; raises InvalidDigest naming what is wrong."""
        match = _DIGEST_RE.match(text.strip())
        if not match:
            raise InvalidDigest(f"'{text}' is not a digest; write sha256:<64 lowercase hex digits>")
        algorithm, hex_ = match["algorithm"], match["hex"]
        expected = _HEX_LENGTH.get(algorithm)
        if expected is None:
            raise InvalidDigest(f"'{text}': unsupported digest algorithm '{algorithm}'; use sha256")
        if len(hex_) != expected or not re.fullmatch(r"[0-9a-f]+", hex_):
            raise InvalidDigest(
                f"'{text}' is not a digest; {algorithm} takes {expected} lowercase hex digits"
            )
        return cls(algorithm, hex_)

    @classmethod
    def of(cls, content: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of exactly these bytes."""
        return cls(algorithm, hashlib.new(algorithm, content).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """For display only: algorithm and the first 12 hex digits."""
        return f"{self.algorithm}:{self.hex[:12]}"


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository in a registry: ``registry/name``."""

    registry: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Repository:
        """Parse ``registry/name`` (registry defaults to docker.io as docker does)."""
        ref = ImageRef.parse(text)
        if ref.tag is not None or ref.digest is not None:
            raise InvalidImageRef(f"'{text}' names a tag or digest; a repository has neither")
        return ref.repository

    def __str__(self) -> str:
        return f"{self.registry}/{self.name}"


def _split_registry(text: str) -> tuple[str, str]:
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    name = text if "/" in text else f"library/{text}"
    return DEFAULT_REGISTRY, name


@dataclass(frozen=True, slots=True)
class ImageRef:
    """What a user names: a repository with a tag, a digest, both, or neither."""

    repository: Repository
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``[registry/]name[:tag][@digest]``; raises InvalidImageRef naming the bad part."""
        raw = text.strip()
        if not raw:
            raise InvalidImageRef("empty image reference; write registry/repository:tag")
        rest, _, digest_text = raw.partition("@")
        digest = Digest.parse(digest_text) if digest_text else None
        registry, path = _split_registry(rest)
        tag = None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, _, tag = path.rpartition(":")
            if not TAG_RE.match(tag):
                raise InvalidImageRef(
                    f"'{text}': tag '{tag}' is not valid; tags match "
                    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
                )
        if not NAME_RE.match(path):
            raise InvalidImageRef(
                f"'{text}': repository '{path}' is not valid; use lowercase letters, digits "
                "and separators (. _ __ -) between '/'-separated components"
            )
        return cls(Repository(registry, path), tag, digest)

    @property
    def reference(self) -> str:
        """What goes in a manifest URL: the digest when known, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    def __str__(self) -> str:
        text = str(self.repository)
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class PinnedImage:
    """An image fixed by digest; ``tag`` only records how it was found."""

    repository: Repository
    digest: Digest
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}"

    def with_address(self, registry: str) -> str:
        """The same digest pulled through another address (e.g. a VPC-internal one)."""
        return f"{registry}/{self.repository.name}@{self.digest}"
