"""Deployers: one module per outside system that runs images (kubernetes.py, ...)."""
