"""Deployers: one module per way of rolling a digest out (GitOps, Kubernetes)."""

from __future__ import annotations
