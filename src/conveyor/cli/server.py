"""`conveyor serve`, `conveyor events ...` and `conveyor token create`."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from conveyor.cli.runs import (
    _emit,
    _services,
    json_option,
    parse_retention,
    retention_notice,
    state_options,
    worker_options,
)
from conveyor.engine.background import Wakeup, run_background
from conveyor.engine.worker import Worker, worker_name
from conveyor.service import events, tokens
from conveyor.service.context import Services


def background(
    services: Services,
    worker: Worker,
    stop: threading.Event,
    poll: float,
    wakeup: Wakeup | None = None,
) -> None:
    """Process the inbox, drive runs, poll and fire schedules until ``stop`` is set.

    Woken at once through ``wakeup`` (the webhooks call it), else every ``poll``
    seconds; see conveyor.engine.background.
    """
    run_background(
        services,
        worker,
        stop,
        poll=poll,
        wakeup=wakeup or Wakeup(),
        report=lambda message: click.echo(message, err=True),
    )


def _make_server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the signal after its graceful shutdown.

        uvicorn re-raises SIGTERM/SIGINT once it has stopped, which would kill the
        process before Conveyor stops its worker; here the signal only asks the
        server to finish in-flight requests and return.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            originals = {
                sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return Server


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="CONVEYOR_HOST",
    show_envvar=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    envvar="CONVEYOR_PORT",
    show_envvar=True,
    help="Port to listen on.",
)
@click.option(
    "--poll",
    default=0.5,
    show_default=True,
    help="Seconds between looks for work not announced by this server's webhooks "
    "(accepted events wake the worker at once).",
)
@worker_options
@state_options
def serve(
    host: str,
    port: int,
    poll: float,
    lease: float,
    concurrency: int,
    event_retention: timedelta | None,
    config_path: Path | None,
    database_url: str | None,
) -> None:
    """Serve the API and the webhooks, and run the workers, in one process."""
    import uvicorn

    from conveyor.api.app import build_app

    services, _ = _services(config_path, database_url)
    services.event_retention = event_retention
    worker = Worker(
        services=services,
        name=worker_name(),
        lease=timedelta(seconds=lease),
        concurrency=concurrency,
    )
    stop = threading.Event()
    wakeup = Wakeup()
    thread = threading.Thread(
        target=background,
        args=(services, worker, stop, poll, wakeup),
        name="conveyor-worker",
        daemon=True,
    )
    thread.start()
    hooks = ", ".join(f"/hooks/{name}" for name in services.definitions.webhooks) or "none"
    click.echo(f"conveyor serving on http://{host}:{port} (webhooks: {hooks})", err=True)
    click.echo(retention_notice(event_retention), err=True)
    server = _make_server_class()(
        uvicorn.Config(
            build_app(services, on_accepted=wakeup.accepted, worker_alive=thread.is_alive),
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=10,
        )
    )
    try:
        server.run()
    finally:
        stop.set()
        wakeup.wake()
        thread.join(timeout=30)
        click.echo(
            "conveyor stopped; accepted events not yet processed stay in the inbox", err=True
        )


@click.group("events")
def events_group() -> None:
    """Registry events received by webhooks: what each triggered and why."""


@events_group.command("list")
@click.option("--limit", default=20, show_default=True, help="At most this many (1-1000).")
@click.option(
    "--status",
    type=click.Choice(["pending", "processed", "duplicate", "failed"]),
    help="Only events in this state (pending: accepted, not processed yet).",
)
@click.option("--endpoint", metavar="NAME", help="Only events received at /hooks/NAME.")
@state_options
@json_option
def events_list(
    limit: int,
    status: str | None,
    endpoint: str | None,
    config_path: Path | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Recent events, newest first."""
    services, _ = _services(config_path, database_url)
    rows = events.list_events(services, limit=limit, status=status, endpoint=endpoint)

    def human(data: list[dict[str, Any]]) -> None:
        click.echo(f"{'ID':>5}  {'ENDPOINT':<12} {'KIND':<15} {'STATUS':<10} {'RUNS':<8} IMAGE")
        for row in data:
            started = [
                str(t["run"]) for t in (row["outcome"] or {}).get("triggers", []) if t.get("run")
            ]
            image = f"{row['repository']}:{row['tag'] or '-'}"
            click.echo(
                f"{row['id']:>5}  {row['endpoint']:<12} {row['kind']:<15} "
                f"{row['status']:<10} {','.join(started) or '-':<8} {image}"
            )

    _emit(rows, as_json, human)


@events_group.command("show")
@click.argument("event_id", type=int)
@state_options
@json_option
def events_show(
    event_id: int, config_path: Path | None, database_url: str | None, as_json: bool
) -> None:
    """One event and, for every trigger, whether it matched and why."""
    services, _ = _services(config_path, database_url)
    view = events.show_event(services, event_id)

    def human(data: dict[str, Any]) -> None:
        click.echo(
            f"event {data['id']} from /hooks/{data['endpoint']} ({data['sender']}): "
            f"{data['kind']} {data['registry']}/{data['repository']}:{data['tag'] or '-'}"
            f"@{data['digest'] or '-'}"
        )
        click.echo(
            f"  status: {data['status']}, delivery {data['delivery_id']}, "
            f"redeliveries {data['redeliveries']}"
        )
        for trigger in (data["outcome"] or {}).get("triggers", []):
            mark = "matched" if trigger["matched"] else "no match"
            run = f" -> run {trigger['run']}" if trigger.get("run") else ""
            refused = f" (refused: {trigger['refused']})" if trigger.get("refused") else ""
            click.echo(
                f"  {trigger['pipeline']}[{trigger['trigger']}]: {mark}: "
                f"{trigger['reason']}{run}{refused}"
            )

    _emit(view, as_json, human)


@events_group.command("replay")
@click.argument("event_id", type=int)
@state_options
def events_replay(event_id: int, config_path: Path | None, database_url: str | None) -> None:
    """Match EVENT's triggers again and start the runs they call for."""
    services, settings = _services(config_path, database_url)
    outcome = events.replay(services, event_id, user=settings.user)
    click.echo(json.dumps(outcome, indent=2, default=str))


@events_group.command("prune")
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION",
    help="Delete events received longer ago than this (e.g. 30d; at least 1d).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@state_options
def events_prune(
    older_than: str, dry_run: bool, config_path: Path | None, database_url: str | None
) -> None:
    """Delete old events that are done with (pending ones, and originals still repeated, stay).

    Runs keep everything they recorded but the link to their event. `conveyor
    serve --event-retention` does this every hour by itself.
    """
    retention = parse_retention(older_than, "--older-than")
    services, settings = _services(config_path, database_url)

    def progress(total: int) -> None:
        click.echo(f"  {total} deleted so far ...", err=True)

    pruned = events.prune(
        services, older_than=retention, user=settings.user, dry_run=dry_run, progress=progress
    )
    verb = "would delete" if pruned.dry_run else "deleted"
    click.echo(
        f"{verb} {pruned.deleted} event(s) received before {pruned.before.isoformat()}",
        err=True,
    )


@click.group("token")
def token_group() -> None:
    """API tokens."""


@token_group.command("create")
@click.option("--name", required=True, help="The API user's identity.")
@click.option(
    "--role", required=True, type=click.Choice(["viewer", "operator", "approver", "admin"])
)
@state_options
def token_create(name: str, role: str, config_path: Path | None, database_url: str | None) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    services, settings = _services(config_path, database_url)
    token = tokens.create(services, name=name, role=role, created_by=settings.user)
    click.echo(token)
    click.echo(f"token '{name}' ({role}) created; store it now, it is not shown again", err=True)
