"""Benchmark: version selection over 100,000 tags (regex with extract, plus a semver range).

Prints the median time of ``versions.select`` next to the median time of
Python's ``sorted()`` on the same list of tag strings, measured in the same
run, and the ratio. Targets (issue 4): under 300 ms, and within 10x of sorted().
It reports PASS or MISS for each and always exits 0; the figures go in
docs/performance.md.

    .venv/bin/python bench/select.py [--tags N] [--rounds R]
"""

from __future__ import annotations

import sys

# bench/copy.py is named as issue 3 asks; keep this folder off the import path so that
# it does not shadow the standard library's `copy` module.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("bench")]

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable

from conveyor.core import versions

TARGET_MS = 300.0
TARGET_RATIO = 10.0


def make_tags(count: int, *, seed: int = 4) -> list[versions.TagInfo]:
    """A realistic mix: releases, prereleases, debug builds, signatures and other names."""
    rng = random.Random(seed)
    tags = []
    for i in range(count):
        major, minor, patch = rng.randrange(4), rng.randrange(30), rng.randrange(200)
        roll = rng.random()
        if roll < 0.70:
            tag = f"myapp-V{major}.{minor}.{patch}"
        elif roll < 0.80:
            tag = f"myapp-V{major}.{minor}.{patch}-rc.{rng.randrange(9)}"
        elif roll < 0.85:
            tag = f"myapp-V{major}.{minor}.{patch}-debug"
        elif roll < 0.90:
            tag = f"sha256-{rng.getrandbits(256):064x}.sig"
        elif roll < 0.95:
            tag = f"feature-{i}"
        else:
            tag = f"myapp-V{major}.{minor}"
        tags.append(versions.TagInfo(tag))
    return tags


def timings_ms(action: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median and best wall time of ``action`` over ``rounds`` runs, in milliseconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    tags = make_tags(args.tags)
    names = [info.tag for info in tags]
    flt = versions.TagFilter(
        pattern=r"^myapp-V(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)$",
        extract="$version",
        exclude=("*-debug",),
    )
    policy = versions.SemverPolicy(range=">=1.0.0 <3.0.0")

    selection = versions.select(tags, filter=flt, policy=policy)  # warm-up and sanity
    select_ms, select_best = timings_ms(
        lambda: versions.select(tags, filter=flt, policy=policy), args.rounds
    )
    sorted_ms, sorted_best = timings_ms(lambda: sorted(names), args.rounds)
    rows_ms, _ = timings_ms(selection.rows, max(3, args.rounds // 5))
    ratio = select_ms / sorted_ms

    print(f"python {platform.python_version()} on {platform.machine()}, {args.tags} tags")
    print(f"winner: {selection.winner.tag if selection.winner else None} ({selection.reason})")
    print(
        f"select():   median {select_ms:8.1f} ms, best {select_best:.1f} ms, {args.rounds} rounds"
    )
    print(
        f"sorted():   median {sorted_ms:8.1f} ms, best {sorted_best:.1f} ms (same list, same run)"
    )
    print(f"ratio:      {ratio:8.1f}x")
    print(f"rows():     median {rows_ms:8.1f} ms (full explanation, built on demand)")
    print(f"target < {TARGET_MS:.0f} ms:        {'PASS' if select_ms < TARGET_MS else 'MISS'}")
    print(f"target <= {TARGET_RATIO:.0f}x sorted(): {'PASS' if ratio <= TARGET_RATIO else 'MISS'}")


if __name__ == "__main__":
    main()
