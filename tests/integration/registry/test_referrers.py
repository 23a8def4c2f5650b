"""Referrers on real registry 2.8.2, which lacks the API: the sha256-<hex> tag fallback."""

from __future__ import annotations

import json

import httpx

from conveyor.core.images import Digest, PinnedImage, Repository
from conveyor.registry import referrers
from conveyor.registry.copy import copy_image
from tests.support.registry import skopeo_digest

ATTESTATION = "application/vnd.conveyor.verification.v1+json"


async def test_push_and_list_referrers_through_fallback_tag(
    anonymous_registry, images, client_for, repo_name
):
    """Artifacts with a subject are listed through the sha256-<hex> tag index, no duplicates."""
    client = client_for(anonymous_registry)
    source = PinnedImage(
        repository=Repository(anonymous_registry.host, "src/single"),
        digest=Digest.parse(images.single),
    )
    await copy_image(
        client, source, destination=client, to=Repository(anonymous_registry.host, repo_name)
    )
    subject = PinnedImage(
        repository=Repository(anonymous_registry.host, repo_name), digest=source.digest
    )
    api = httpx.get(f"{anonymous_registry.url}/v2/{repo_name}/referrers/{subject.digest}")
    assert (api.status_code, api.text.strip()) == (404, "404 page not found")

    assert await referrers.list_referrers(client, subject) == []
    payload = json.dumps({"environment": "pre-release", "verified": True}).encode()
    first = await referrers.push_referrer(
        client,
        subject,
        artifact_type=ATTESTATION,
        payload=payload,
        payload_media_type=ATTESTATION,
        annotations={"org.opencontainers.image.created": "2026-11-28T14:02:11Z"},
    )
    again = await referrers.push_referrer(
        client,
        subject,
        artifact_type=ATTESTATION,
        payload=payload,
        payload_media_type=ATTESTATION,
        annotations={"org.opencontainers.image.created": "2026-11-28T14:02:11Z"},
    )
    other = await referrers.push_referrer(
        client,
        subject,
        artifact_type="application/vnd.example.sbom",
        payload=b"{}",
        payload_media_type="application/vnd.example.sbom",
    )
    assert first.digest == again.digest
    found = await referrers.list_referrers(client, subject)
    assert [d.digest for d in found] == [first.digest, other.digest]
    assert found[0].artifact_type == ATTESTATION
    assert found[0].annotations == {"org.opencontainers.image.created": "2026-11-28T14:02:11Z"}
    only = await referrers.list_referrers(client, subject, artifact_type=ATTESTATION)
    assert [d.digest for d in only] == [first.digest]

    tag = f"sha256-{subject.digest.hex}"
    assert referrers.fallback_tag(subject.digest) == tag
    index = await client.fetch_manifest(subject.repository, tag)
    assert skopeo_digest(f"{anonymous_registry.host}/{repo_name}:{tag}") == str(index.digest)
    artifact = await client.fetch_manifest(subject.repository, first.digest)
    assert artifact.subject is not None and artifact.subject.digest == subject.digest
    assert artifact.artifact_type == ATTESTATION
