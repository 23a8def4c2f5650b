"""Step runners: one module per step kind, registered in RUNNERS (engine/steps/table.py)."""

from __future__ import annotations
