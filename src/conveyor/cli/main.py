"""The `conveyor` command: a thin click layer over the use cases.

Commands are listed in one explicit table (COMMANDS) at the bottom.
Exit codes: 0 success, 1 a Conveyor error (printed as `Error: ...`),
2 usage errors (click's convention).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from conveyor import __version__, logs
from conveyor.core.errors import ConveyorError


class ConveyorGroup(click.Group):
    """A click group that turns Conveyor errors into one clear line and exit 1."""

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
    logs.configure(debug=debug)


def _register() -> None:
    from conveyor.cli import audit, config_commands, db_commands, image, runs, select, server

    commands: list[click.Command] = [
        config_commands.validate,
        config_commands.schema,
        db_commands.db,
        image.image,
        select.select_command,
        *runs.COMMANDS,
        *server.COMMANDS,
        *audit.COMMANDS,
    ]
    for command in commands:
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        sys.exit(cli.main(prog_name="conveyor", standalone_mode=True))
    except BrokenPipeError:
        # The reader went away (`conveyor runs list | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
