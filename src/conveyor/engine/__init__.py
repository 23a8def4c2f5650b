"""Running and resuming work: the worker loop and the step runners."""

from __future__ import annotations
