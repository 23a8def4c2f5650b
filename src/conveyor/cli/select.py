"""`conveyor select`: which tag a filter and policy pick from a list, and why.

Exit codes: 0 a tag was chosen (printed on stdout); 1 no tag qualifies (the
reason on stderr); 2 the rule or the tags file is invalid (file:line:column:
field and what would be valid, on stderr).

``--json`` prints one object (documented in docs/selection.md)::

    {"selected": "v1.4.2" | null, "reason": "...", "candidates": 3,
     "policy": "semver",
     "tags": [{"tag": ..., "kept": true, "key": ..., "rank": 1, "reason": ...}]}

``tags`` is present only with ``--explain``. With ``--source NAME`` the rule
and the tags come from a configured artifact source and its live registry, and
the output adds the winner's ``digest``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from conveyor.cli.config_commands import config_option
from conveyor.config import selection as rules
from conveyor.core import versions
from conveyor.core.errors import InvalidDefinition, InvalidInput, Location, Problem

EXIT_NONE = 1
EXIT_INVALID = 2


@click.command("select")
@click.option(
    "--source",
    "source_name",
    help="A configured artifact source: select from its registry's tags, print the digest too.",
)
@config_option
@click.option(
    "--rule",
    "rule_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="CONVEYOR_SELECT_RULE",
    show_envvar=True,
    help="YAML file with filter: and policy: in the config's syntax.",
)
@click.option(
    "--tags",
    "tags_path",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    envvar="CONVEYOR_SELECT_TAGS",
    show_envvar=True,
    help="One tag per line, optionally a tab and an RFC 3339 creation time ('-': stdin).",
)
@click.option(
    "--explain",
    is_flag=True,
    envvar="CONVEYOR_SELECT_EXPLAIN",
    show_envvar=True,
    help="Show every tag's verdict.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="CONVEYOR_SELECT_JSON",
    show_envvar=True,
    help="Print stable JSON.",
)
@click.pass_context
def select_command(
    ctx: click.Context,
    source_name: str | None,
    config_path: Path | None,
    rule_path: Path | None,
    tags_path: Path | None,
    explain: bool,
    as_json: bool,
) -> None:
    """Pick a tag with a filter and policy, and say why.

    Either --rule RULE.yaml --tags TAGS.txt, or --source NAME (a configured
    artifact source, against its live registry).
    """
    if source_name is not None:
        if rule_path is not None or tags_path is not None:
            raise click.UsageError("give --source, or --rule with --tags, not both")
        _select_source(ctx, source_name, config_path, explain=explain, as_json=as_json)
        return
    if rule_path is None or tags_path is None:
        raise click.UsageError("give --rule RULE.yaml and --tags TAGS.txt (or --source NAME)")
    try:
        rule = rules.load_rule(rule_path)
        tags = read_tags(tags_path)
        selection = versions.select(
            tags, filter=rule.filter.to_core(), policy=rule.policy.to_core()
        )
    except InvalidInput as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(EXIT_INVALID)
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"Error: cannot read the rule or the tags file: {exc}", err=True)
        ctx.exit(EXIT_INVALID)
    policy = next(kind for kind in rules.POLICY_KINDS if getattr(rule.policy, kind) is not None)
    _report(ctx, selection, policy=policy, explain=explain, as_json=as_json, digest=None)


def _report(
    ctx: click.Context,
    selection: versions.Selection,
    *,
    policy: str,
    explain: bool,
    as_json: bool,
    digest: str | None,
) -> None:
    if as_json:
        document = to_json(selection, policy=policy, explain=explain)
        if digest is not None:
            document["digest"] = digest
        click.echo(json.dumps(document, indent=2))
    elif explain:
        _print_table(selection)
        if digest is not None:
            click.echo(f"digest: {digest}")
    elif selection.winner is not None:
        click.echo(selection.winner.tag if digest is None else f"{selection.winner.tag} {digest}")
    if selection.winner is None:
        click.echo(f"Error: {selection.reason}", err=True)
        ctx.exit(EXIT_NONE)


def _select_source(
    ctx: click.Context, name: str, config_path: Path | None, *, explain: bool, as_json: bool
) -> None:
    import asyncio

    from conveyor import settings as settings_module
    from conveyor import wiring
    from conveyor.config import loader
    from conveyor.core.images import ImageRef
    from conveyor.service import selection as source_selection

    settings = settings_module.from_environ()
    definitions = loader.load(config_path or settings.config_path)
    artifact = definitions.sources.get(name)
    if artifact is None:
        known = ", ".join(sorted(definitions.sources)) or "none"
        raise click.UsageError(f"--source: no source '{name}'; defined: {known}")
    registries = wiring.ConfiguredRegistries(
        definitions.registries, settings_module.process_environ()
    )

    async def pick() -> tuple[versions.Selection, str | None]:
        chosen, _ = await source_selection.select_tag(registries, artifact)
        if chosen.winner is None:
            return chosen, None
        repository = source_selection.repository_of(registries, artifact)
        pinned = await registries.client(artifact.registry).resolve(
            ImageRef(repository, tag=chosen.winner.tag)
        )
        return chosen, str(pinned.digest)

    chosen, digest = asyncio.run(pick())
    _, policy_value = source_selection.rule_of(artifact)
    policy = type(policy_value).__name__.removesuffix("Policy").lower()
    _report(ctx, chosen, policy=policy, explain=explain, as_json=as_json, digest=digest)


def read_tags(path: Path) -> list[versions.TagInfo]:
    """Read ``tag[<TAB>RFC 3339 time]`` lines; blank lines and ``#`` comments are skipped."""
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    tags: list[versions.TagInfo] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tag, _, when = line.partition("\t")
        tag = tag.strip()
        created = _parse_time(when.strip(), file=str(path), line=number) if when.strip() else None
        tags.append(versions.TagInfo(tag, created=created))
    return tags


def _parse_time(text: str, *, file: str, line: int) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise InvalidDefinition(
            [
                Problem(
                    location=Location(file=file, line=line, field="created"),
                    message=f"'{text}' is not an RFC 3339 time with an offset; "
                    "write e.g. 2024-05-01T12:00:00Z",
                )
            ]
        )
    return value


def to_json(selection: versions.Selection, *, policy: str, explain: bool) -> dict[str, object]:
    """The documented JSON shape of a selection."""
    document: dict[str, object] = {
        "selected": selection.winner.tag if selection.winner else None,
        "reason": selection.reason,
        "candidates": selection.candidates,
        "policy": policy,
    }
    if explain:
        document["tags"] = [
            {"tag": r.tag, "kept": r.kept, "key": r.key, "rank": r.rank, "reason": r.reason}
            for r in selection.rows()
        ]
    return document


def _print_table(selection: versions.Selection) -> None:
    console = Console(soft_wrap=False, width=max(Console().width, 160), highlight=False)
    table = Table(show_edge=False, header_style="bold")
    for column in ("tag", "filter", "key", "rank", "reason"):
        table.add_column(column, overflow="fold")
    for row in selection.rows():
        table.add_row(
            Text(row.tag),
            Text("kept" if row.kept else "dropped"),
            Text(row.key or ""),
            Text(str(row.rank) if row.rank is not None else ""),
            Text(row.reason),
        )
    console.print(table)
    if selection.winner is not None:
        console.print(f"selected: {selection.winner.tag} ({selection.reason})", markup=False)
