"""Benchmark: `conveyor image copy` against `skopeo copy --all`, alternating, same run.

Builds three images with umoci (small; several-layer; two-platform index with
>= 500 MB of incompressible layers in total), pushes them to a real
docker-registry on loopback, then times both tools for
(a) same registry, other repository and (b) registry to a second registry.
Every copy goes to a fresh repository, so nothing is skipped. Prints medians,
the Conveyor/skopeo ratio and Conveyor's peak RSS (from wait4's ru_maxrss).

    .venv/bin/python bench/copy.py [--repeats 3] [--multi-mb 520] [--json out.json]
"""

from __future__ import annotations

import sys

# This file is named copy.py (the issue names it); drop its directory from the
# import path before anything imports the stdlib `copy` module.
sys.path[:] = [p for p in sys.path if not p.endswith("bench")]

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio
from tests.support.registry import ImageLayout, RegistryProcess, start_registry

from conveyor.core.images import ImageRef, PinnedImage
from conveyor.registry.client import DistributionRegistry
from conveyor.registry.copy import copy_image
from conveyor.registry.endpoints import RegistryEndpoint

IMAGES = ("small", "layered", "multi")
CONVEYOR = str(ROOT / ".venv/bin/conveyor")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (this machine is shared)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(args: list[str], env: dict[str, str], work: Path) -> tuple[float, int, str]:
    """Wall time (s), peak RSS (KiB, from /usr/bin/time) and stdout of one command."""
    rss_file = work / "rss.txt"
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, int(rss_file.read_text().split()[-1]), done.stdout


def one_copy(source: str, dest: str) -> None:
    """`--one-copy`: time one library copy after the imports; print seconds."""

    async def copy_once() -> None:
        src, dst = ImageRef.parse(source), ImageRef.parse(dest)
        clients: dict[str, DistributionRegistry] = {}
        for host in {src.repository.registry, dst.repository.registry}:
            endpoint = RegistryEndpoint.for_host(host, insecure=True)
            clients[host] = DistributionRegistry(endpoint)
        try:
            from_client = clients[src.repository.registry]
            manifest = await from_client.fetch_manifest(src.repository, src.reference)
            await copy_image(
                from_client,
                PinnedImage(repository=src.repository, digest=manifest.digest),
                destination=clients[dst.repository.registry],
                to=dst.repository,
                tag=dst.tag,
                manifest=manifest,
            )
        finally:
            for client in clients.values():
                await client.aclose()

    start = time.perf_counter()
    anyio.run(copy_once)
    print(f"{time.perf_counter() - start:.6f}")


def build(layout: ImageLayout, multi_mb: int) -> None:
    """small: one 64 KiB layer; layered: 8 x 4 MiB; multi: 2 platforms x 5 layers."""
    print("building images ...", file=sys.stderr)
    layout.build("small", layers=[{"f": os.urandom(64 * 1024)}])
    layout.build("layered", layers=[{"f": os.urandom(4 * 1024 * 1024)} for _ in range(8)])
    per_layer = multi_mb * 1024 * 1024 // 10
    for arch in ("amd64", "arm64"):
        layout.build(
            arch, layers=[{"f": os.urandom(per_layer)} for _ in range(5)], architecture=arch
        )
    layout.write_index("multi", {"amd64": ("linux", "amd64"), "arm64": ("linux", "arm64")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--multi-mb", type=int, default=520)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", choices=IMAGES, action="append", help="time only these images")
    parser.add_argument("--one-copy", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one_copy:
        one_copy(*options.one_copy)
        return
    # Time the CLI as scripts/install leaves it: with the sources' bytecode
    # current (this environment may set PYTHONDONTWRITEBYTECODE).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    print(f"load average at start: {load_average()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        work = Path(tmp)
        one = start_registry(work / "registry-a")
        try:
            layout = ImageLayout(work / "layout")
            build(layout, options.multi_mb)
            for name in ("small", "layered", "multi"):
                layout.push(name, f"{one.host}/bench/{name}:v1")
            results = run(options.repeats, one, work, options.only or IMAGES)
        finally:
            one.stop()
    print(f"load average at end: {load_average()}", file=sys.stderr)
    report(results)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))


def command(tool: str, source: str, dest: str) -> list[str]:
    """The command line timing one copy with ``tool``."""
    if tool == "conveyor":
        return [CONVEYOR, "image", "copy", "--all-platforms", "--json", source, dest]
    if tool == "library":
        return [sys.executable, str(Path(__file__).resolve()), "--one-copy", source, dest]
    return [
        "skopeo",
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{source}",
        f"docker://{dest}",
    ]


def run(
    repeats: int, one: RegistryProcess, work: Path, images: Sequence[str]
) -> dict[str, dict[str, list[float]]]:
    """Alternate the tools; (b) copies to a fresh registry each time.

    A fresh destination registry per copy keeps skopeo's blob-info cache from
    turning a registry-to-registry copy into mounts from an earlier run's repository.
    """
    results: dict[str, dict[str, list[float]]] = {}
    counter = 0
    tools = ("conveyor", "skopeo", "library")
    for name in images:
        for scenario in ("same-registry", "registry-to-registry"):
            key = f"{name} / {scenario}"
            results[key] = {tool: [] for tool in tools}
            results[key].update(conveyor_rss_kib=[], library_rss_kib=[])
            for i in range(repeats):
                for tool in tools if i % 2 == 0 else tools[::-1]:
                    counter += 1
                    target = one
                    if scenario == "registry-to-registry":
                        target = start_registry(work / f"dest-{counter}")
                    source = f"{one.host}/bench/{name}:v1"
                    dest = f"{target.host}/copy{counter}/{name}:v1"
                    env = dict(os.environ, CONVEYOR_INSECURE_REGISTRIES=f"{one.host} {target.host}")
                    try:
                        elapsed, rss, out = timed(command(tool, source, dest), env, work)
                    finally:
                        if target is not one:
                            target.stop()
                            shutil.rmtree(target.directory, ignore_errors=True)
                    if tool == "library":
                        elapsed = float(out.strip())
                    results[key][tool].append(elapsed)
                    if tool != "skopeo":
                        results[key][f"{tool}_rss_kib"].append(rss)
                print(
                    f"{key} run {i + 1}: "
                    + " ".join(f"{t} {results[key][t][-1]:.2f}s" for t in tools),
                    file=sys.stderr,
                )
    return results


def report(results: dict[str, dict[str, list[float]]]) -> None:
    print(
        f"{'image / scenario':34} {'skopeo s':>9} {'CLI s':>7} {'ratio':>6} "
        f"{'library s':>10} {'ratio':>6} {'CLI peak RSS':>13} {'lib RSS':>10}"
    )
    for key, data in results.items():
        skopeo = statistics.median(data["skopeo"])
        cli = statistics.median(data["conveyor"])
        library = statistics.median(data["library"])
        rss = max(data["conveyor_rss_kib"]) / 1024
        library_rss = max(data["library_rss_kib"]) / 1024
        print(
            f"{key:34} {skopeo:9.2f} {cli:7.2f} {cli / skopeo:6.2f} "
            f"{library:10.2f} {library / skopeo:6.2f} {rss:10.0f} MB {library_rss:7.0f} MB"
        )


if __name__ == "__main__":
    main()
