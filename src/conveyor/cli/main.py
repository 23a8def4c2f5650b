"""The `conveyor` command: a thin click layer over the use cases.

Commands are listed in one explicit table (COMMANDS) below; a command's
module is imported only when that command runs (or for the top-level
``--help``), so ``conveyor image copy`` does not pay for SQLAlchemy, pydantic,
the engine or structlog at start-up. Exit codes: 0 success, 1 a Conveyor
error (printed as `Error: ...`), 2 usage errors (click's convention).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from conveyor import __version__
from conveyor.core.errors import ConveyorError

# Command name -> "module:attribute" of its click command.
COMMANDS: dict[str, str] = {
    "validate": "conveyor.cli.config_commands:validate",
    "schema": "conveyor.cli.config_commands:schema",
    "db": "conveyor.cli.db_commands:db",
    "image": "conveyor.cli.image:image",
    "select": "conveyor.cli.select:select_command",
    "run": "conveyor.cli.runs:run_command",
    "approve": "conveyor.cli.runs:approve",
    "reject": "conveyor.cli.runs:reject",
    "cancel": "conveyor.cli.runs:cancel",
    "rollback": "conveyor.cli.runs:rollback",
    "mark-bad": "conveyor.cli.runs:mark_bad",
    "clear-bad": "conveyor.cli.runs:clear_bad",
    "worker": "conveyor.cli.runs:worker",
    "runs": "conveyor.cli.runs:runs_group",
    "env": "conveyor.cli.runs:env_group",
    "serve": "conveyor.cli.server:serve",
    "events": "conveyor.cli.server:events_group",
    "token": "conveyor.cli.server:token_group",
    "audit": "conveyor.cli.audit:audit_group",
}
# Short commands that never log through structlog and leave nothing for the
# interpreter's shutdown to do once they return (no files, threads or
# subprocesses open): logging is not set up for them, and once their output is
# flushed the process ends with os._exit, skipping the teardown of every
# imported module (about 0.1 s, a fifth of a `conveyor image copy`).
SHORT_COMMANDS = frozenset({"image"})
_running = {"short": False}


class ConveyorGroup(click.Group):
    """A click group that turns Conveyor errors into one clear line and exit 1.

    Subcommands come from COMMANDS and are imported on first use.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise RuntimeError(f"COMMANDS[{cmd_name!r}] = {target!r} is not that command")
        self.add_command(command)
        return command

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401 - click's own signature
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort, BrokenPipeError):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
            click.echo("run with --debug for details", err=True)
            ctx.exit(1)


CONTEXT_SETTINGS = {
    "auto_envvar_prefix": "CONVEYOR",
    "show_default": True,
    "help_option_names": ["-h", "--help"],
}


@click.group(cls=ConveyorGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="conveyor")
@click.option(
    "--debug",
    is_flag=True,
    envvar="CONVEYOR_DEBUG",
    show_envvar=True,
    help="Show tracebacks for unexpected errors.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Promote container images through environments, by digest."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _running["short"] = ctx.invoked_subcommand in SHORT_COMMANDS
    if not _running["short"]:
        from conveyor import logs

        logs.configure(debug=debug)


def main() -> None:
    """Console-script entry point."""
    try:
        try:
            cli.main(prog_name="conveyor", standalone_mode=True)
        except SystemExit as done:
            if _running["short"] and (done.code is None or isinstance(done.code, int)):
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(done.code or 0)
            raise
    except BrokenPipeError:
        # The reader went away (`conveyor runs list | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
