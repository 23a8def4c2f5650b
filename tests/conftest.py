"""Fixtures shared by every test tier."""

from __future__ import annotations

# Real servers the suites share (see tests/support/); each fixture starts its server lazily.
pytest_plugins = ["tests.support.postgres"]
