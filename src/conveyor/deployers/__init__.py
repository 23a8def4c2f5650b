"""Deployers: one module per way of rolling a digest out (gitops.py, kubernetes.py)."""

from __future__ import annotations
