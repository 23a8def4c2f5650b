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

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
from tests.support.registry import ImageLayout, start_registry  # noqa: E402

from conveyor.core.images import ImageRef  # noqa: E402
from conveyor.registry.client import DistributionRegistry  # noqa: E402
from conveyor.registry.copy import copy_image  # noqa: E402
from conveyor.registry.endpoints import RegistryEndpoint  # noqa: E402

CONVEYOR = str(ROOT / ".venv/bin/conveyor")


def timed(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time (s) and peak RSS (KiB) of one command; fails loudly."""
    start = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.decode()}\n{err.decode()}")
    return elapsed, usage.ru_maxrss


def in_process(source: str, dest: str) -> float:
    """Seconds for one copy through the library in this (already warm) process."""

    async def main() -> None:
        src, dst = ImageRef.parse(source), ImageRef.parse(dest)
        clients: dict[str, DistributionRegistry] = {}
        for host in {src.repository.registry, dst.repository.registry}:
            endpoint = RegistryEndpoint.for_host(host, insecure=True)
            clients[host] = DistributionRegistry(endpoint)
        try:
            from_client = clients[src.repository.registry]
            pinned = await from_client.resolve(src)
            await copy_image(
                from_client,
                pinned,
                destination=clients[dst.repository.registry],
                to=dst.repository,
                tag=dst.tag,
            )
        finally:
            for client in clients.values():
                await client.aclose()

    start = time.perf_counter()
    anyio.run(main)
    return time.perf_counter() - start


def build(layout: ImageLayout, work: Path, multi_mb: int) -> None:
    print("building images ...", file=sys.stderr)
    layout.build("small", layers=[{"f": os.urandom(64 * 1024)}])
    layout.build("layered", layers=[{"f": os.urandom(4 * 1024 * 1024)} for _ in range(8)])
    per_layer = multi_mb * 1024 * 1024 // 10  # 2 platforms x 5 layers
    for arch in ("amd64", "arm64"):
        layout.build(
            arch,
            layers=[{"f": os.urandom(per_layer)} for _ in range(5)],
            architecture=arch,
        )
    layout.write_index("multi", {"amd64": ("linux", "amd64"), "arm64": ("linux", "arm64")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--multi-mb", type=int, default=520)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        work = Path(tmp)
        one = start_registry(work / "registry-a")
        two = start_registry(work / "registry-b")
        try:
            layout = ImageLayout(work / "layout")
            build(layout, work, options.multi_mb)
            sizes = {}
            for name in ("small", "layered", "multi"):
                layout.push(name, f"{one.host}/bench/{name}:v1")
                blobs = work / "layout" / "blobs" / "sha256"
                sizes[name] = sum(p.stat().st_size for p in blobs.iterdir())  # upper bound
            results = run(options.repeats, one, two)
        finally:
            one.stop()
            two.stop()
    report(results)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))


def run(repeats: int, one, two) -> dict[str, dict[str, list[float]]]:
    env = dict(os.environ, CONVEYOR_INSECURE_REGISTRIES=f"{one.host} {two.host}")
    results: dict[str, dict[str, list[float]]] = {}
    counter = 0
    for name in ("small", "layered", "multi"):
        for scenario, target in (("same-registry", one), ("registry-to-registry", two)):
            key = f"{name} / {scenario}"
            results[key] = {"conveyor": [], "skopeo": [], "conveyor_rss_kib": [], "library": []}
            for i in range(repeats):
                order = ("conveyor", "skopeo", "library")
                if i % 2:
                    order = ("library", "skopeo", "conveyor")
                for tool in order:
                    counter += 1
                    source = f"{one.host}/bench/{name}:v1"
                    dest = f"{target.host}/copy{counter}/{name}:v1"
                    if tool == "library":
                        results[key]["library"].append(in_process(source, dest))
                        continue
                    if tool == "conveyor":
                        args = [
                            CONVEYOR,
                            "image",
                            "copy",
                            "--all-platforms",
                            "--json",
                            source,
                            dest,
                        ]
                    else:
                        args = [
                            "skopeo",
                            "copy",
                            "--all",
                            "--quiet",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                            f"docker://{source}",
                            f"docker://{dest}",
                        ]
                    elapsed, rss = timed(args, env)
                    results[key][tool].append(elapsed)
                    if tool == "conveyor":
                        results[key]["conveyor_rss_kib"].append(rss)
                print(
                    f"{key} run {i + 1}: conveyor {results[key]['conveyor'][-1]:.2f}s "
                    f"library {results[key]['library'][-1]:.2f}s "
                    f"skopeo {results[key]['skopeo'][-1]:.2f}s",
                    file=sys.stderr,
                )
    return results


def report(results: dict[str, dict[str, list[float]]]) -> None:
    print(
        f"{'image / scenario':34} {'skopeo s':>9} {'CLI s':>7} {'ratio':>6} "
        f"{'library s':>10} {'ratio':>6} {'CLI peak RSS':>13}"
    )
    for key, data in results.items():
        skopeo = statistics.median(data["skopeo"])
        cli = statistics.median(data["conveyor"])
        library = statistics.median(data["library"])
        rss = max(data["conveyor_rss_kib"]) / 1024
        print(
            f"{key:34} {skopeo:9.2f} {cli:7.2f} {cli / skopeo:6.2f} "
            f"{library:10.2f} {library / skopeo:6.2f} {rss:10.0f} MB"
        )


if __name__ == "__main__":
    main()
