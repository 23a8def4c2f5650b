"""Durations as users write them: ``30s``, ``5m``, ``1h30m``, ``2d``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``90s``, ``5m`` or ``1h30m``; raises ValueError naming the form."""
    raw = text.strip()
    pos = 0
    total = 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += int(match[1]) * _UNIT_SECONDS[match[2]]
        pos = match.end()
    if not raw or pos != len(raw):
        raise ValueError(
            f"'{text}' is not a duration; write a number with a unit (ms, s, m, h, d), "
            "e.g. '30s', '5m' or '1h30m'"
        )
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """The shortest ``1h30m``-style text for a duration."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
