"""Process settings, read once from CONVEYOR_* variables into one frozen value.

Only this module reads the environment (ruff TID251 enforces it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path(".conveyor")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What a Conveyor process needs to know about its surroundings."""

    config_path: Path | None
    database_url: str
    data_dir: Path
    debug: bool
    user: str
    groups: frozenset[str]


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite file."""
    return f"sqlite:///{path}"


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (or the given mapping)."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("CONVEYOR_DATA_DIR", str(DEFAULT_DATA_DIR)))
    config = env.get("CONVEYOR_CONFIG")
    return Settings(
        config_path=Path(config) if config else None,
        database_url=env.get("CONVEYOR_DATABASE_URL") or sqlite_url(data_dir / "state.db"),
        data_dir=data_dir,
        debug=env.get("CONVEYOR_DEBUG", "") not in ("", "0", "false"),
        user=env.get("CONVEYOR_USER") or env.get("USER") or env.get("LOGNAME") or _os_user(),
        groups=_groups(env.get("CONVEYOR_GROUPS")),
    )


def _os_user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _groups(text: str | None) -> frozenset[str]:
    """CONVEYOR_GROUPS (comma-separated), else the process's Unix groups."""
    if text is not None:
        return frozenset(g.strip() for g in text.split(",") if g.strip())
    import grp

    names = set()
    for gid in os.getgroups():
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return frozenset(names)


def environ_value(name: str) -> str | None:
    """One variable of the process environment, for credential references in config."""
    return os.environ.get(name)


# What commands run by steps inherit from Conveyor's own environment: enough to find
# programs and write files, and nothing else (no credentials leak into steps by accident).
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "DOCKER_CONFIG")


def inherited_environ() -> dict[str, str]:
    """The part of the process environment that step commands inherit."""
    return {k: v for k, v in os.environ.items() if k in INHERITED}


def process_environ() -> dict[str, str]:
    """The whole process environment: the values config references (credentials, templates)."""
    return dict(os.environ)
