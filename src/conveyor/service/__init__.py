"""Use cases: each owns its transaction and calls the core rules."""

from __future__ import annotations
