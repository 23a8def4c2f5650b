"""Everyday verbs: run, approve, reject, cancel, rollback, mark-bad, worker; and `runs`, `env`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from conveyor import settings as settings_module
from conveyor import wiring
from conveyor.cli.config_commands import config_option
from conveyor.core import durations, gates
from conveyor.core.runs import RunStatus
from conveyor.engine.worker import Worker, worker_name
from conveyor.service import environments, queries, runs
from conveyor.service.context import Services

F = TypeVar("F", bound=Callable[..., Any])


def state_options(func: F) -> F:
    """--config and --database-url, which every command that touches state takes."""
    func = click.option(
        "--database-url",
        envvar="CONVEYOR_DATABASE_URL",
        show_envvar=True,
        help="sqlite:///path or postgresql://user:pass@host/db (default .conveyor/state.db).",
    )(func)
    return config_option(func)


def worker_options(func: F) -> F:
    """--lease, --concurrency and --event-retention, which `conveyor worker` and `serve` take."""
    func = click.option(
        "--event-retention",
        default=None,
        metavar="DURATION",
        envvar="CONVEYOR_EVENT_RETENTION",
        show_envvar=True,
        callback=lambda _ctx, param, value: (
            None if value is None else parse_retention(value, param.opts[0])
        ),
        help="Every hour, delete webhook events received longer ago than this and done "
        "with (e.g. 30d; at least 1d). Default: keep every event.",
    )(func)
    func = click.option(
        "--concurrency",
        default=4,
        show_default=True,
        type=click.IntRange(1, 64),
        envvar="CONVEYOR_WORKER_CONCURRENCY",
        show_envvar=True,
        help="Runs driven at once (each run's steps stay in order; deploys to one "
        "environment never overlap).",
    )(func)
    return click.option(
        "--lease",
        default=30.0,
        show_default=True,
        envvar="CONVEYOR_WORKER_LEASE",
        show_envvar=True,
        help="Seconds a claim lasts without renewal (crash takeover time).",
    )(func)


def parse_retention(text: str, option: str) -> timedelta:
    """An event retention given on the command line: a duration of at least MIN_RETENTION."""
    from conveyor.service.events import MIN_RETENTION

    try:
        retention = durations.parse_duration(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=option) from None
    if retention < MIN_RETENTION:
        raise click.BadParameter(
            f"'{text}' is shorter than {durations.format_duration(MIN_RETENTION)}, the "
            "least retention (redeliveries are recognised against recent events)",
            param_hint=option,
        )
    return retention


def retention_notice(retention: timedelta | None) -> str:
    """What a long-running process says at start about deleting old events."""
    if retention is None:
        return "webhook events are kept (no --event-retention)"
    return (
        f"webhook events done with are deleted {durations.format_duration(retention)} "
        "after they arrive (--event-retention), checked hourly"
    )


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def _services(config_path: Path | None, database_url: str | None) -> tuple[Services, Any]:
    settings = settings_module.from_environ()
    return wiring.services(settings, config=config_path, database_url=database_url), settings


def _emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:  # noqa: ANN401
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human(data)


@click.command("run")
@click.argument("pipeline")
@click.option("--tag", help="Take the image this tag points at (must pass the source's filter).")
@click.option("--digest", help="Take exactly this digest (sha256:...).")
@click.option(
    "--from-run", type=int, help="Pipeline sources: take this successful upstream run's image."
)
@click.option(
    "--param", "params", multiple=True, metavar="K=V", help="Pipeline parameter (repeatable)."
)
@click.option("--wait", is_flag=True, help="Run it here and wait until it finishes.")
@state_options
@json_option
def run_command(
    pipeline: str,
    tag: str | None,
    digest: str | None,
    from_run: int | None,
    params: tuple[str, ...],
    wait: bool,
    config_path: Path | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Start a run of PIPELINE with its image fixed now, by digest."""
    services, settings = _services(config_path, database_url)
    request = runs.RunRequest(
        pipeline=pipeline,
        tag=tag,
        digest=digest,
        from_run=from_run,
        parameters=runs.parse_params(params),
        user=settings.user,
    )
    run_id = runs.start_run(services, request)
    if wait:
        _drive(services, run_id, announce=not as_json)
    view = queries.show_run(services, run_id)
    if as_json:
        click.echo(json.dumps(view, indent=2, default=str))
        return
    image = view["image"] or "(made by its build step)"
    click.echo(f"run {run_id} of {pipeline}: {view['status']}  image {image}")
    if view["status"] == RunStatus.QUEUED:
        click.echo(
            "a worker runs it (`conveyor worker` or `conveyor serve`); "
            f"follow it with `conveyor runs logs {run_id} --follow`",
            err=True,
        )
    if view["status"] in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise SystemExit(1)


def _drive(services: Services, run_id: int, *, announce: bool) -> None:
    """Work on the run in this process until it ends; waits at gates for decisions."""
    worker = Worker(services=services, name=worker_name())
    told = ""
    while True:
        claimed = worker.claim_run(run_id)
        if claimed:
            asyncio.run(worker.process(run_id))
        view = queries.show_run(services, run_id)
        if RunStatus(view["status"]).is_terminal:
            return
        waiting = view.get("waiting_for") or ""
        if announce and waiting and waiting != told:
            click.echo(f"run {run_id} waiting: {waiting}", err=True)
            told = waiting
        time.sleep(0.5)


@click.command()
@click.argument("run_id", type=int)
@click.option("--comment", default="", help="Why (recorded with your name and the time).")
@state_options
def approve(run_id: int, comment: str, config_path: Path | None, database_url: str | None) -> None:
    """Approve RUN's waiting gate (e.g. "verification passed") as the current user."""
    services, settings = _services(config_path, database_url)
    approver = gates.Approver(user=settings.user, groups=settings.groups)
    gate = runs.decide(services, run_id, approver=approver, approved=True, comment=comment)
    click.echo(f"{settings.user} approved '{gate}' of run {run_id}")


@click.command()
@click.argument("run_id", type=int)
@click.option("--comment", required=True, help="Why (recorded with your name and the time).")
@state_options
def reject(run_id: int, comment: str, config_path: Path | None, database_url: str | None) -> None:
    """Reject RUN's waiting gate; the run fails."""
    services, settings = _services(config_path, database_url)
    approver = gates.Approver(user=settings.user, groups=settings.groups)
    gate = runs.decide(services, run_id, approver=approver, approved=False, comment=comment)
    click.echo(f"{settings.user} rejected '{gate}' of run {run_id}")


@click.command()
@click.argument("run_id", type=int)
@state_options
def cancel(run_id: int, config_path: Path | None, database_url: str | None) -> None:
    """Cancel a run that has not finished."""
    services, settings = _services(config_path, database_url)
    runs.cancel(services, run_id, user=settings.user)
    click.echo(f"cancel requested for run {run_id}")


@click.command()
@click.argument("environment")
@click.option("--to", "target", help="A run id or a digest from the environment's history.")
@click.option("--wait", is_flag=True, help="Run the rollback here and wait until it finishes.")
@state_options
def rollback(
    environment: str,
    target: str | None,
    wait: bool,
    config_path: Path | None,
    database_url: str | None,
) -> None:
    """Redeploy an earlier digest to ENVIRONMENT, through the same gates."""
    services, settings = _services(config_path, database_url)
    to_run = int(target) if target and target.isdigit() else None
    to_digest = target if target and not target.isdigit() else None
    run_id = runs.rollback(
        services, environment, to_run=to_run, to_digest=to_digest, user=settings.user
    )
    if wait:
        _drive(services, run_id, announce=True)
    view = queries.show_run(services, run_id)
    click.echo(
        f"rollback run {run_id} of {view['pipeline']}: {view['status']}  image {view['image']}"
    )


@click.command("mark-bad")
@click.argument("digest")
@click.option("--reason", required=True, help="Shown on every refusal of this digest.")
@state_options
def mark_bad(digest: str, reason: str, config_path: Path | None, database_url: str | None) -> None:
    """Block DIGEST from every environment until `conveyor clear-bad`."""
    services, settings = _services(config_path, database_url)
    environments.mark_bad(services, digest, reason=reason, user=settings.user)
    click.echo(f"{digest} marked bad: {reason}")


@click.command("clear-bad")
@click.argument("digest")
@state_options
def clear_bad(digest: str, config_path: Path | None, database_url: str | None) -> None:
    """Lift the bad mark of DIGEST."""
    services, settings = _services(config_path, database_url)
    count = environments.clear_bad(services, digest, user=settings.user)
    click.echo(f"{digest}: {count} mark(s) cleared")


@click.command()
@click.option("--until-idle", is_flag=True, help="Exit when no run needs attention.")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between looks for work.")
@worker_options
@state_options
def worker(
    until_idle: bool,
    poll: float,
    lease: float,
    concurrency: int,
    event_retention: timedelta | None,
    config_path: Path | None,
    database_url: str | None,
) -> None:
    """Run queued work, process webhook events, poll sources and fire schedules.

    Picks up after a crash; several workers may run at once (pollers and
    schedules run in exactly one of them).
    """
    services, _ = _services(config_path, database_url)
    services.event_retention = event_retention
    engine_worker = Worker(
        services=services,
        name=worker_name(),
        lease=timedelta(seconds=lease),
        concurrency=concurrency,
    )
    click.echo(f"worker {engine_worker.name} started", err=True)
    click.echo(retention_notice(event_retention), err=True)
    if until_idle:
        count = asyncio.run(engine_worker.run_until_idle())
        click.echo(f"processed {count} run(s); nothing else needs attention now", err=True)
        return
    from conveyor.cli.server import background

    stop = threading.Event()
    try:
        background(services, engine_worker, stop, poll)
    except KeyboardInterrupt:
        stop.set()
        click.echo("worker stopped", err=True)


# --- runs ------------------------------------------------------------------------------------


@click.group("runs")
def runs_group() -> None:
    """List runs, show one, read its logs."""


@runs_group.command("list")
@click.option("--pipeline")
@click.option("--status", type=click.Choice([s.value for s in RunStatus]))
@click.option("--limit", default=20, show_default=True)
@state_options
@json_option
def runs_list(
    pipeline: str | None,
    status: str | None,
    limit: int,
    config_path: Path | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Recent runs, newest first."""
    services, _ = _services(config_path, database_url)
    rows = queries.list_runs(services, pipeline=pipeline, status=status, limit=limit)

    def human(data: list[dict[str, Any]]) -> None:
        click.echo(f"{'ID':>5}  {'PIPELINE':<26} {'STATUS':<10} {'BY':<12} IMAGE")
        for row in data:
            image = row["image"] or "-"
            click.echo(
                f"{row['id']:>5}  {row['pipeline']:<26} {row['status']:<10} "
                f"{row['triggered_by']:<12} {image}"
            )

    _emit(rows, as_json, human)


@runs_group.command("show")
@click.argument("run_id", type=int)
@state_options
@json_option
def runs_show(
    run_id: int, config_path: Path | None, database_url: str | None, as_json: bool
) -> None:
    """One run: image, status, steps and approvals."""
    services, _ = _services(config_path, database_url)
    view = queries.show_run(services, run_id)

    def human(data: dict[str, Any]) -> None:
        click.echo(f"run {data['id']} of {data['pipeline']}: {data['status']}")
        click.echo(f"  image:        {data['image'] or '-'}")
        click.echo(f"  tag:          {data['tag'] or '-'}")
        click.echo(f"  environment:  {data['environment'] or '-'}")
        click.echo(f"  triggered by: {data['triggered_by']} ({data['trigger']})")
        if data["upstream_run"]:
            click.echo(f"  from run:     {data['upstream_run']}")
        if data["error"]:
            click.echo(f"  error:        {data['error']}")
        for step in data["steps"]:
            reason = f"  ({step['reason']})" if step["reason"] else ""
            click.echo(f"  [{step['status']:<9}] {step['name']} ({step['kind']}){reason}")
        for decision in data["approvals"]:
            click.echo(
                f"  {decision['decision']} by {decision['user']} at "
                f"{decision['decided_at']}: {decision['comment']}"
            )

    _emit(view, as_json, human)


@runs_group.command("logs")
@click.argument("run_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@state_options
def runs_logs(
    run_id: int, follow: bool, config_path: Path | None, database_url: str | None
) -> None:
    """A run's step logs (with --follow, live)."""
    services, _ = _services(config_path, database_url)
    after = 0
    while True:
        lines, after = queries.read_logs(services, run_id, after=after)
        for line in lines:
            click.echo(f"[{line['step']}] {line['line']}")
        if not follow or RunStatus(queries.show_run(services, run_id)["status"]).is_terminal:
            if follow:
                lines, after = queries.read_logs(services, run_id, after=after)
                for line in lines:
                    click.echo(f"[{line['step']}] {line['line']}")
            return
        time.sleep(0.5)


# --- environments ----------------------------------------------------------------------------


@click.group("env")
def env_group() -> None:
    """Environments: what runs where, and their history."""


@env_group.command("list")
@state_options
@json_option
def env_list(config_path: Path | None, database_url: str | None, as_json: bool) -> None:
    """Every environment in order, with the digest it runs now."""
    services, _ = _services(config_path, database_url)
    rows = queries.list_environments(services)

    def human(data: list[dict[str, Any]]) -> None:
        click.echo(f"{'ENVIRONMENT':<16} {'REQUIRES':<16} {'RUN':>5}  IMAGE")
        for row in data:
            click.echo(
                f"{row['name']:<16} {','.join(row['requires']) or '-':<16} "
                f"{row['run_id'] or '-':>5}  {row['image'] or '-'}"
            )

    _emit(rows, as_json, human)


@env_group.command("show")
@click.argument("environment")
@state_options
@json_option
def env_show(
    environment: str, config_path: Path | None, database_url: str | None, as_json: bool
) -> None:
    """What ENVIRONMENT runs now: digest, tag, run, who and when."""
    services, _ = _services(config_path, database_url)
    view = queries.show_environment(services, environment)

    def human(data: dict[str, Any]) -> None:
        click.echo(f"{data['name']}: {data['image'] or 'nothing deployed yet'}")
        if data["image"]:
            click.echo(
                f"  tag {data['tag'] or '-'}, run {data['run_id']}, by {data['deployed_by']} "
                f"at {data['deployed_at']}"
            )
        if data["requires"]:
            click.echo(f"  requires verification in: {', '.join(data['requires'])}")

    _emit(view, as_json, human)


@env_group.command("history")
@click.argument("environment")
@state_options
@json_option
def env_history(
    environment: str, config_path: Path | None, database_url: str | None, as_json: bool
) -> None:
    """Every deployment to ENVIRONMENT, newest first."""
    services, _ = _services(config_path, database_url)
    rows = queries.environment_history(services, environment)

    def human(data: list[dict[str, Any]]) -> None:
        click.echo(f"{'WHEN':<26} {'KIND':<9} {'RUN':>5}  {'BY':<12} {'TAG':<18} DIGEST")
        for row in data:
            click.echo(
                f"{row['deployed_at']:<26} {row['kind']:<9} {row['run_id'] or '-':>5}  "
                f"{row['deployed_by']:<12} {row['tag'] or '-':<18} {row['digest']}"
            )

    _emit(rows, as_json, human)
