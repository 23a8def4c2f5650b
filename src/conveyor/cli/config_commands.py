"""`conveyor validate` and `conveyor schema`: the config loader from the terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from conveyor.config import loader
from conveyor.config import schema as config_schema
from conveyor.core.errors import InvalidDefinition

F = TypeVar("F", bound=Callable[..., Any])
CONFIG_HELP = "Config file or directory (default ./conveyor.yaml, else ./conveyor.d/)."


def config_option(func: F) -> F:
    """The --config option every command that reads definitions takes."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        envvar="CONVEYOR_CONFIG",
        show_envvar=True,
        help=CONFIG_HELP,
    )(func)


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print problems as JSON.")
def validate(path: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Check a configuration and print every problem found (exit 0 valid, 1 invalid)."""
    target = path or config_path
    try:
        definitions = loader.load(target)
    except InvalidDefinition as exc:
        if as_json:
            click.echo(
                json.dumps(
                    {"valid": False, "problems": [_problem_json(p) for p in exc.problems]}, indent=2
                )
            )
        else:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            count = len(exc.problems)
            click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        raise SystemExit(1) from None
    summary = {
        "valid": True,
        "files": definitions.files,
        "registries": sorted(definitions.registries),
        "environments": [e.name for e in definitions.environments],
        "sources": sorted(definitions.sources),
        "pipelines": sorted(definitions.pipelines),
        "webhooks": sorted(definitions.webhooks),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"valid: {len(definitions.files)} file(s)")
    for key in ("registries", "environments", "sources", "pipelines", "webhooks"):
        names = summary[key]
        click.echo(f"  {key}: {', '.join(names) if names else '-'}")  # type: ignore[arg-type]


def _problem_json(problem: object) -> dict[str, object]:
    from conveyor.core.errors import Problem

    assert isinstance(problem, Problem)
    location = problem.location
    return {
        "file": location.file,
        "line": location.line,
        "column": location.column,
        "field": location.field,
        "message": problem.message,
    }


@click.command()
def schema() -> None:
    """Print the JSON Schema of the config format (for editors' YAML language servers)."""
    click.echo(json.dumps(config_schema.json_schema(), indent=2))
