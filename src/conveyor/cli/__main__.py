"""`python -m conveyor.cli` runs the command line."""

from __future__ import annotations

from conveyor.cli.main import main

main()
