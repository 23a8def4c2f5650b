"""``conveyor image``: resolve, list tags, inspect and copy images by digest.

Results go to stdout (``--json`` for scripts: stable keys documented in
docs/registry.md); progress goes to stderr, and only when stderr is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import click

from conveyor import settings
from conveyor.core.errors import InvalidInput
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.registry import copy, dockerconfig, inspection
from conveyor.registry.client import DistributionRegistry
from conveyor.registry.endpoints import RegistryEndpoint

if TYPE_CHECKING:
    from rich.progress import TaskID

T = TypeVar("T")


def default_authfile() -> Path:
    """Docker's config.json: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    return dockerconfig.default_path(settings.environ_value("DOCKER_CONFIG"))


@dataclass
class Registries:
    """One client per registry host for the duration of a command."""

    insecure: frozenset[str]
    authfile: Path
    clients: dict[str, DistributionRegistry] = field(default_factory=dict)

    def client(self, host: str) -> DistributionRegistry:
        if host not in self.clients:
            credentials = dockerconfig.load_credentials(host, path=self.authfile)
            endpoint = RegistryEndpoint.for_host(
                host, credentials=credentials, insecure=host in self.insecure
            )
            self.clients[host] = DistributionRegistry(endpoint)
        return self.clients[host]

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def _run(ctx: click.Context, work: Callable[[Registries], Awaitable[T]]) -> T:
    options: dict[str, Any] = ctx.find_object(dict) or {}
    insecure: tuple[str, ...] = options.get("insecure_registries") or ()
    authfile: Path | None = options.get("authfile")
    registries = Registries(insecure=frozenset(insecure), authfile=authfile or default_authfile())

    async def main() -> T:
        try:
            return await work(registries)
        finally:
            await registries.aclose()

    return anyio.run(main)


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group("image")
@click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST",
    envvar="CONVEYOR_INSECURE_REGISTRIES",
    show_envvar=True,
    help="Reach HOST (e.g. 127.0.0.1:5000) over plain http without TLS checks. Repeatable.",
)
@click.option(
    "--authfile",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CONVEYOR_AUTHFILE",
    show_envvar=True,
    help="Docker config.json with registry credentials "
    "[default: $DOCKER_CONFIG/config.json or ~/.docker/config.json].",
)
@click.pass_context
def image(ctx: click.Context, insecure_registries: Sequence[str], authfile: Path | None) -> None:
    """Find, inspect and copy images in OCI registries, by digest."""
    ctx.ensure_object(dict)
    ctx.obj["insecure_registries"] = tuple(insecure_registries)
    ctx.obj["authfile"] = authfile


@image.command()
@click.argument("ref")
@JSON_OPTION
@click.pass_context
def resolve(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Print the digest REF (registry/repository:tag) points at now."""
    parsed = ImageRef.parse(ref)

    async def work(registries: Registries) -> PinnedImage:
        return await registries.client(parsed.repository.registry).resolve(parsed)

    pinned = _run(ctx, work)
    if as_json:
        _echo_json({"image": str(pinned), "digest": str(pinned.digest), "tag": pinned.tag})
    else:
        click.echo(str(pinned.digest))


@image.command()
@click.argument("repository")
@JSON_OPTION
@click.pass_context
def tags(ctx: click.Context, repository: str, as_json: bool) -> None:
    """List the tags of REPOSITORY (registry/repository), one per line."""
    parsed = Repository.parse(repository)

    async def work(registries: Registries) -> list[str]:
        return await registries.client(parsed.registry).list_tags(parsed)

    found = _run(ctx, work)
    if as_json:
        _echo_json({"repository": str(parsed), "tags": found})
    else:
        for tag in found:
            click.echo(tag)


@image.command()
@click.argument("ref")
@JSON_OPTION
@click.pass_context
def inspect(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show REF's media type, digest, platforms, created time, labels and size."""
    parsed = ImageRef.parse(ref)

    async def work(registries: Registries) -> inspection.ImageInfo:
        client = registries.client(parsed.repository.registry)
        return await inspection.inspect_image(client, parsed)

    info = _run(ctx, work)
    if as_json:
        _echo_json(info.to_json())
        return
    click.echo(f"Image:       {info.image}")
    click.echo(f"Media type:  {info.media_type}")
    click.echo(f"Size:        {_size(info.size)} ({info.size} bytes)")
    for item in info.platforms:
        click.echo(f"Platform:    {item.platform or 'unknown'}  {item.digest}")
        click.echo(f"  Created:   {item.created or '-'}")
        click.echo(f"  Size:      {_size(item.size)} in {item.layers} layer(s)")
        for key, value in sorted(item.labels.items()):
            click.echo(f"  Label:     {key}={value}")


class _Bar:
    """Adapts copy progress to a rich progress bar on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.tasks: dict[Digest, tuple[TaskID, int]] = {}

    def blob_started(self, digest: Digest, size: int) -> None:
        self.tasks[digest] = (self.progress.add_task(digest.short, total=size), size)

    def blob_advanced(self, digest: Digest, done: int) -> None:
        self.progress.update(self.tasks[digest][0], completed=done)

    def blob_finished(self, digest: Digest, how: str) -> None:
        task, size = self.tasks[digest]
        self.progress.update(task, completed=size, description=f"{digest.short} {how}")


@image.command(name="copy")
@click.argument("source")
@click.argument("destination")
@click.option(
    "--all-platforms",
    is_flag=True,
    help="Copy a multi-platform index with every platform (required for an index).",
)
@JSON_OPTION
@click.pass_context
def copy_command(
    ctx: click.Context, source: str, destination: str, all_platforms: bool, as_json: bool
) -> None:
    """Copy SOURCE to DESTINATION by digest (registry/repository[:tag]); the digest is kept."""
    source_ref = ImageRef.parse(source)
    target = ImageRef.parse(destination)
    bar = _Bar() if sys.stderr.isatty() and not as_json else None

    async def work(registries: Registries) -> copy.CopyResult:
        from_client = registries.client(source_ref.repository.registry)
        to_client = registries.client(target.repository.registry)
        manifest = await from_client.fetch_manifest(
            source_ref.repository, source_ref.digest or source_ref.reference
        )
        pinned = PinnedImage(repository=source_ref.repository, digest=manifest.digest)
        if target.digest is not None and target.digest != pinned.digest:
            raise InvalidInput(
                f"'{destination}' names {target.digest} but {source} is {pinned.digest}"
            )
        if bar is not None:
            bar.progress.start()
        try:
            return await copy.copy_image(
                from_client,
                pinned,
                destination=to_client,
                to=target.repository,
                tag=target.tag,
                all_platforms=all_platforms,
                progress=bar,
                manifest=manifest,
            )
        finally:
            if bar is not None:
                bar.progress.stop()

    result = _run(ctx, work)
    summary = {
        "source": str(result.source),
        "destination": str(result.image),
        "digest": str(result.image.digest),
        "tag": result.image.tag,
        "mediaType": result.media_type,
        "manifests": result.manifests,
        "blobs": {
            "mounted": result.blobs_mounted,
            "copied": result.blobs_copied,
            "skipped": result.blobs_skipped,
        },
        "bytesCopied": result.bytes_copied,
    }
    if as_json:
        _echo_json(summary)
        return
    tag = f" (tag {result.image.tag})" if result.image.tag else ""
    click.echo(f"Copied {result.source} to {result.image}{tag}")
    click.echo(
        f"  {result.manifests} manifest(s); blobs: {result.blobs_mounted} mounted, "
        f"{result.blobs_copied} copied ({_size(result.bytes_copied)}), "
        f"{result.blobs_skipped} already present"
    )
