"""Conveyor: promote container images through environments, by digest."""

from __future__ import annotations

__version__ = "0.1.0"
