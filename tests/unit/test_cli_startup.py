"""The command table is imported lazily, and short commands end quickly but completely."""

from __future__ import annotations

import os
import subprocess
import sys

import click
from click.testing import CliRunner

from conveyor.cli.main import COMMANDS, cli

# Libraries the `image` commands do not need at all.
NOT_FOR_IMAGE_COMMANDS = (
    "sqlalchemy",
    "alembic",
    "pydantic",
    "structlog",
    "starlette",
    "uvicorn",
    "lightkube",
    "rich",
    "pygments",
    "conveyor.config",
    "conveyor.store",
    "conveyor.engine",
)


def run_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console entry point in a fresh interpreter, stdout a pipe, block-buffered."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    program = code or "import sys; from conveyor.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_every_table_entry_is_the_command_it_names():
    """Each COMMANDS entry imports to a click command of that name; help lists them all."""
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert isinstance(command, click.Command) and command.name == name
    listed = CliRunner().invoke(cli, ["--help"]).output
    assert all(f"  {name} " in listed for name in COMMANDS)


def test_image_commands_import_only_what_they_need():
    """`conveyor image ...` loads neither the database, config, engine nor log libraries."""
    code = (
        "import sys; from conveyor.cli.main import cli\n"
        "cli.main(['image', 'copy', '--help'], standalone_mode=False)\n"
        f"print([m for m in {NOT_FOR_IMAGE_COMMANDS!r} if m in sys.modules])\n"
        "print(sys.modules.get('httpx._main', 'absent'), 'httpx' in sys.modules)"
    )
    done = run_cli(code=code)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-2] == "[]"
    assert lines[-1] == "None True"  # httpx without its own command-line client


def test_short_commands_flush_their_output_before_the_quick_exit():
    """Output through a pipe is complete and exit codes are kept (0 and 1)."""
    shown = run_cli("image", "copy", "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage:") and "--all-platforms" in shown.stdout
    failed = run_cli("image", "resolve", "not a reference!")
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: ")
    usage = run_cli("image", "resolve")
    assert usage.returncode == 2 and "Missing argument" in usage.stderr


def test_other_commands_still_set_up_logging():
    """Commands outside SHORT_COMMANDS configure structlog as before."""
    code = (
        "import sys, structlog; from conveyor.cli.main import cli\n"
        "cli.main(['validate', '--help'], standalone_mode=False)\n"
        "print(structlog.is_configured())"
    )
    done = run_cli(code=code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True"
