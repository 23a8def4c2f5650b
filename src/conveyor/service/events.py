"""Registry events: the durable inbox, deduplication, and triggers with reasons.

``ingest`` runs while the sender waits: ``prepare`` (cap, verify, parse with
conveyor.webhooks; no I/O), then ``store`` (one transaction for the events of
one or of many deliveries: the HTTP endpoint batches concurrent deliveries
through ``service.inbox_writer``); the 2xx answer follows the commit.
``process_pending`` runs later, in the worker: it resolves what a sender left
out (digest or tag) from the registry, matches every ``registry_event``
trigger and starts at most one run per (event, pipeline), recording for each
trigger why it did or did not fire.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
import structlog

from conveyor import aio, webhooks
from conveyor.config.models import Webhook
from conveyor.core import events as core_events
from conveyor.core.credentials import Secret
from conveyor.core.durations import format_duration
from conveyor.core.errors import ConveyorError, InvalidInput, NotFound, WebhookRejected
from conveyor.core.events import Headers, InboundDelivery, RegistryEvent
from conveyor.core.images import Digest, ImageRef, PinnedImage, Repository
from conveyor.service import listing, runs
from conveyor.service.context import Services
from conveyor.store import audit, claims, tables
from conveyor.store import events as inbox
from conveyor.store.database import core_transaction, unit_of_work
from conveyor.webhooks.oidc import OidcPolicy, OidcVerifier, UnknownSigningKey

log = structlog.get_logger("conveyor.events")

# Same kind+repository+digest+tag within this window is a duplicate (registries re-emit).
DEDUPE_WINDOW = timedelta(minutes=10)
# How long a processor holds an event before another may take it over.
EVENT_LEASE = timedelta(seconds=60)
# Resolving a scan event's tags costs one HEAD per tag; look at no more than this many.
MAX_TAGS_TO_RESOLVE = 200
# Pruning the inbox: never closer than this (redeliveries and repeats are matched
# against recent events), and this many events per transaction.
MIN_RETENTION = timedelta(days=1)
PRUNE_CHUNK = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class Ingested:
    """What one delivery added to the inbox."""

    accepted: list[int]
    duplicates: int
    ignored: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A verified, parsed delivery, ready to store: the part of ``ingest`` without I/O."""

    endpoint: str
    deliveries: list[inbox.Delivery]
    received_at: datetime


def prepare(services: Services, endpoint: str, *, headers: Headers, body: bytes) -> Prepared:
    """Verify and parse one delivery; raises WebhookRejected or NotFound, writing nothing.

    Does no I/O (an ``auth: oidc`` endpoint's keys are looked up in memory), so
    the server calls it on its event loop. ``UnknownSigningKey`` (a 401) means
    the token names a key the held set lacks: ``refresh_keys``, wait, and call
    this again once (what ``ingest`` and the HTTP endpoint do). During a secret
    rotation (``previous_secret_env``), a delivery the current secret refuses
    with 401 is checked against the previous one too.
    """
    webhook = services.definitions.webhooks.get(endpoint)
    if webhook is None:
        raise NotFound("webhook endpoint", endpoint)
    now = services.clock()
    delivery = InboundDelivery(headers=headers, body=body, received_at=now)
    receive = functools.partial(
        webhooks.receive,
        webhooks.FORMATS[webhook.format],
        delivery,
        auth=webhook.auth,
        header=webhook.header,
        oidc=_oidc(services, endpoint, webhook),
    )
    try:
        parsed = receive(_secret(services, endpoint, webhook))
    except WebhookRejected as refused:
        previous = _previous_secret(services, webhook)
        if refused.status != 401 or previous is None:
            raise
        try:
            parsed = receive(previous)
        except WebhookRejected:
            raise refused from None  # what the current secret found wrong
        log.warning(
            "webhook delivery authenticated with the previous secret; finish the rotation "
            "at the sender",
            endpoint=endpoint,
            variable=webhook.previous_secret_env,
        )
    # An endpoint tied to a configured registry speaks for it: its host wins over
    # whatever public name the sender uses (docker.io, harbor.example.com, ...).
    default_registry = (
        services.registries.definition(webhook.registry).host if webhook.registry else ""
    )
    return Prepared(
        endpoint=endpoint,
        deliveries=[_delivery(endpoint, event, default_registry) for event in parsed],
        received_at=now,
    )


def _secret(services: Services, endpoint: str, webhook: Webhook) -> Secret:
    if webhook.auth == "oidc" or webhook.secret_env is None:  # the config requires one otherwise
        return Secret("")
    secret_value = services.environ.get(webhook.secret_env)
    if not secret_value:
        raise WebhookRejected(
            f"endpoint '{endpoint}' has no secret: {webhook.secret_env} is not set on the server",
            status=401,
        )
    return Secret(secret_value)


def _previous_secret(services: Services, webhook: Webhook) -> Secret | None:
    """The secret being rotated out, when configured and set (else None: not accepted)."""
    if webhook.previous_secret_env is None:
        return None
    value = services.environ.get(webhook.previous_secret_env)
    return Secret(value) if value else None


def _oidc(services: Services, endpoint: str, webhook: Webhook) -> OidcVerifier | None:
    if webhook.auth != "oidc":
        return None
    keys = services.webhook_keys.get(endpoint)
    if keys is None:
        raise WebhookRejected(
            f"endpoint '{endpoint}' (auth: oidc) has no signing keys on the server", status=401
        )
    policy = OidcPolicy(
        audience=webhook.audience or "", issuers=webhook.issuers, email=webhook.email
    )
    return OidcVerifier(policy, keys)


def refresh_keys(services: Services, endpoint: str) -> Future[None] | None:
    """After ``UnknownSigningKey``: start refetching the endpoint's signing keys.

    Returns the future to wait on before preparing the delivery again, or None
    when no fetch will happen (no keys, or one was started moments ago).
    """
    keys = services.webhook_keys.get(endpoint)
    return None if keys is None else keys.request_refresh()


def store(
    services: Services, batch: Sequence[Prepared], *, connection: sa.Connection | None = None
) -> list[Ingested]:
    """Durably store prepared deliveries in ONE transaction; one result per delivery, in order.

    Returns after the commit; if anything fails nothing of the batch is stored
    and the error propagates (DatabaseUnavailable for connection problems).
    Runs on ``connection`` when given (the caller holds it), else on a pooled one.
    """
    received = [(d, item.received_at) for item in batch for d in item.deliveries]
    with core_transaction(services.engine, connection) as transaction:
        stored = iter(
            inbox.record_deliveries(transaction, received, duplicate_window=DEDUPE_WINDOW)
        )
    results = []
    for item in batch:
        accepted: list[int] = []
        duplicates = 0
        for outcome in itertools.islice(stored, len(item.deliveries)):
            if outcome.status == "pending":
                accepted.append(outcome.id)
            else:  # a redelivery (the original counts it) or the same content again
                duplicates += 1
        results.append(Ingested(accepted=accepted, duplicates=duplicates, ignored=0))
    return results


def ingest(services: Services, endpoint: str, *, headers: Headers, body: bytes) -> Ingested:
    """Verify, parse and durably store one delivery; raises WebhookRejected or NotFound.

    Nothing is written unless verification and parsing succeed. The HTTP
    endpoint does the same in two halves (``prepare``, then ``store`` through
    the group-commit ``InboxWriter``).
    """
    try:
        prepared = prepare(services, endpoint, headers=headers, body=body)
    except UnknownSigningKey:
        pending = refresh_keys(services, endpoint)
        if pending is None:
            raise
        pending.result()
        prepared = prepare(services, endpoint, headers=headers, body=body)
    [result] = store(services, [prepared])
    return result


def _delivery(endpoint: str, event: RegistryEvent, registry: str) -> inbox.Delivery:
    return inbox.Delivery(
        endpoint=endpoint,
        sender=event.sender,
        delivery_id=event.delivery_id,
        kind=str(event.kind),
        registry_host=registry or event.registry or "",
        repository=event.repository,
        tag=event.tag,
        digest=str(event.digest) if event.digest else None,
        scan_summary=_scan(event),
    )


def _scan(event: RegistryEvent) -> dict[str, Any] | None:
    if event.scan is None:
        return None
    return {
        "scanner": event.scan.scanner,
        "status": event.scan.status,
        "severities": dict(event.scan.severities),
        "total": event.scan.total,
    }


# Events claimed per transaction by process_pending (each is processed, then the next batch).
CLAIM_BATCH = 8


def process_pending(services: Services, *, owner: str, limit: int | None = None) -> int:
    """Process pending events, oldest first (at most ``limit``); returns how many."""
    count = 0
    while limit is None or count < limit:
        wanted = CLAIM_BATCH if limit is None else min(CLAIM_BATCH, limit - count)
        with unit_of_work(services.engine) as session:
            batch = claims.claim_events(
                session, worker=owner, lease=EVENT_LEASE, now=services.clock(), limit=wanted
            )
        if not batch:
            break
        for claimed in batch:
            _process(services, _claimed_facts(claimed), event_id=claimed.id, replay=False)
            count += 1
    return count


def process(services: Services, event_id: int, *, replay: bool = False) -> dict[str, Any]:
    """Resolve, match every trigger, start runs; records and returns the outcome."""
    with unit_of_work(services.engine, read_only=True) as session:
        row = session.get(tables.Event, event_id)
        if row is None:
            raise NotFound("event", str(event_id), hint="see `conveyor events list`")
        facts = _facts(row)
    return _process(services, facts, event_id=event_id, replay=replay)


def _process(
    services: Services, facts: Mapping[str, Any], *, event_id: int, replay: bool
) -> dict[str, Any]:
    """Resolve, match, then start the matched runs and record the outcome in one transaction.

    The registry is asked (for what the sender left out, and for a tag whose
    digest the event does not carry) before the transaction. Runs and the
    event's ``processed`` status commit together, so an event is never
    processed twice and never left pending with its runs started.
    """
    outcome: dict[str, Any] = {"triggers": []}
    try:
        tags, digest = _resolve(services, facts)
    except ConveyorError as error:
        outcome["error"] = f"could not resolve from the registry: {error}"
        tags, digest = ([facts["tag"]] if facts["tag"] else []), facts["digest"]
    outcome["resolved"] = {"tags": tags, "digest": digest}
    starts: list[tuple[dict[str, Any], runs.Prepared]] = []
    for pipeline_name, pipeline in services.definitions.pipelines.items():
        for index, trigger in enumerate(pipeline.triggers):
            if trigger.registry_event is None:
                continue
            result, request = _match(
                services,
                facts,
                pipeline_name,
                index,
                trigger.registry_event,
                tags,
                digest,
                event_id=None if replay else event_id,
            )
            outcome["triggers"].append(result)
            if request is None:
                continue
            try:
                starts.append((result, runs.prepare_run(services, request)))
            except ConveyorError as error:
                result.update(run=None, refused=str(error))
    with unit_of_work(services.engine) as session:
        for result, prepared in starts:
            try:
                run_id = runs.insert_run(session, services, prepared)
            except ConveyorError as error:  # the gates refused; nothing was written for it
                result.update(run=None, refused=str(error))
                continue
            if run_id is None:
                result.update(run=None, note="a run for this event and pipeline already exists")
            else:
                result.update(run=run_id, digest_from=prepared.fixed.origin)
        session.execute(
            _MARK_PROCESSED, {"event_id": event_id, "at": services.clock(), "result": outcome}
        )
    return outcome


_events = cast(sa.Table, tables.Event.__table__)
# Built once: every processed event runs it.
_MARK_PROCESSED = (
    sa.update(_events)
    .where(_events.c.id == sa.bindparam("event_id"))
    .values(
        status="processed",
        processed_at=sa.bindparam("at", type_=_events.c.processed_at.type),
        claimed_by=None,
        outcome=sa.bindparam("result", type_=_events.c.outcome.type),
    )
)


def _claimed_facts(claimed: claims.EventClaim) -> dict[str, Any]:
    return {
        "id": claimed.id,
        "endpoint": claimed.endpoint,
        "kind": claimed.kind,
        "registry": claimed.registry_host,
        "repository": claimed.repository,
        "tag": claimed.tag,
        "digest": claimed.digest,
        "sender": claimed.sender,
        "delivery_id": claimed.delivery_id,
        "received_at": claimed.received_at,
    }


def _facts(row: tables.Event) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint": row.endpoint,
        "kind": row.kind,
        "registry": row.registry_host,
        "repository": row.repository,
        "tag": row.tag,
        "digest": row.digest,
        "sender": row.sender,
        "delivery_id": row.delivery_id,
        "received_at": row.received_at,
    }


def _resolve(services: Services, facts: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The event's tags and digest, asking the registry for what the sender left out."""
    tag, digest = facts["tag"], facts["digest"]
    if facts["kind"] == "delete" or (tag and digest):
        return ([tag] if tag else []), digest
    name = services.definitions.registry_for_host(facts["registry"])
    if name is None:
        return ([tag] if tag else []), digest
    client = services.registries.client(name)
    repository = Repository(services.registries.definition(name).host, facts["repository"])

    async def resolve() -> tuple[list[str], str | None]:
        if tag and not digest:
            pinned = await client.resolve(ImageRef(repository, tag=tag))
            return [tag], str(pinned.digest)
        wanted = Digest.parse(digest)
        found = []
        for candidate in list(await client.list_tags(repository))[:MAX_TAGS_TO_RESOLVE]:
            pinned = await client.resolve(ImageRef(repository, tag=candidate))
            if pinned.digest == wanted:
                found.append(candidate)
        return found, digest

    return aio.run(resolve())


def _match(
    services: Services,
    facts: Mapping[str, Any],
    pipeline: str,
    index: int,
    trigger: Any,  # noqa: ANN401 - config.models.RegistryEventTrigger
    tags: list[str],
    digest: str | None,
    *,
    event_id: int | None,
) -> tuple[dict[str, Any], runs.RunRequest | None]:
    """Whether one trigger fires (with the reason), and the run it asks for if it does."""
    result: dict[str, Any] = {"pipeline": pipeline, "trigger": index, "matched": False}
    if trigger.webhook is not None and trigger.webhook != facts["endpoint"]:
        result["reason"] = (
            f"trigger listens to webhook '{trigger.webhook}', not '{facts['endpoint']}'"
        )
        return result, None
    source = services.definitions.sources[trigger.source]
    host = services.registries.definition(source.registry).host
    if (
        facts["registry"]
        and facts["registry"] != host
        and services.definitions.registry_for_host(facts["registry"]) != source.registry
    ):
        result["reason"] = (
            f"registry '{facts['registry']}' is not source '{trigger.source}''s {host}"
        )
        return result, None
    candidates: list[str | None] = list(tags) or [None]
    reason = ""
    for tag in candidates:
        event = RegistryEvent(
            kind=core_events.EventKind(facts["kind"]),
            registry=facts["registry"],
            repository=facts["repository"],
            tag=tag,
            digest=Digest.parse(facts["digest"]) if facts["digest"] else None,
            delivery_id=facts["delivery_id"],
            occurred_at=None,
            sender=facts["sender"],
        )
        matched, reason = core_events.matches_trigger(
            event, repository=source.repository, events=trigger.events, tag_regex=trigger.tag
        )
        if matched and tag is not None:
            result.update(matched=True, reason=reason, tag=tag)
            return result, runs.RunRequest(
                pipeline=pipeline,
                tag=tag,
                user="registry-event",
                trigger="registry_event",
                event_id=event_id,
                pushed=_pushed(facts, Repository(host, facts["repository"]), tag, digest),
                # The sender's digest, or the one resolved for its tag a moment ago, above.
                pushed_from="event"
                if facts["digest"]
                else "registry, when the event was processed",
            )
    result["reason"] = reason
    return result, None


def _pushed(
    facts: Mapping[str, Any], repository: Repository, tag: str, digest: str | None
) -> PinnedImage | None:
    """The image the event says is behind ``tag``: the run takes it without a new look.

    The digest is the sender's, or the one resolved for the sender's tag
    while processing this event. A delete event names an image that is gone:
    its runs resolve the tag as a user's would.
    """
    if digest is None or facts["kind"] == "delete":
        return None
    return PinnedImage(repository=repository, digest=Digest.parse(digest), tag=tag)


def replay(services: Services, event_id: int, *, user: str) -> dict[str, Any]:
    """Match an event's triggers again and start what matches now; audited."""
    outcome = process(services, event_id, replay=True)
    with unit_of_work(services.engine) as session:
        audit.record_audit(
            session,
            identity=user,
            action="event.replay",
            target=f"event/{event_id}",
            details={"runs": [t.get("run") for t in outcome["triggers"] if t.get("run")]},
            now=services.clock(),
        )
    return outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Pruned:
    """What ``prune`` did (or, with ``dry_run``, would do)."""

    before: datetime
    deleted: int
    dry_run: bool


def prune(
    services: Services,
    *,
    older_than: timedelta,
    user: str,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Pruned:
    """Delete inbox events received more than ``older_than`` ago that are done with.

    Pending events stay, and so does an original that a kept event repeats.
    Runs keep everything they recorded but the link to their event. Works in
    transactions of ``PRUNE_CHUNK`` events (each audited with ``user``), so a
    large inbox does not hold the database for long; ``progress(n)`` is
    called after each with the running total. Raises InvalidInput for a
    retention under ``MIN_RETENTION``.
    """
    if older_than < MIN_RETENTION:
        raise InvalidInput(
            f"the event retention must be at least {format_duration(MIN_RETENTION)} "
            f"(redeliveries and repeats are recognised against recent events), "
            f"not {format_duration(older_than)}"
        )
    before = services.clock() - older_than
    if dry_run:
        with unit_of_work(services.engine, read_only=True) as session:
            count = inbox.count_prunable(session.connection(), before=before)
        return Pruned(before=before, deleted=count, dry_run=True)
    total = 0
    while True:
        with unit_of_work(services.engine) as session:
            deleted = inbox.prune_events(session.connection(), before=before, limit=PRUNE_CHUNK)
            if deleted:
                audit.record_audit(
                    session,
                    identity=user,
                    action="events.prune",
                    target="events",
                    details={"received_before": before.isoformat(), "deleted": deleted},
                    now=services.clock(),
                )
        if not deleted:
            return Pruned(before=before, deleted=total, dry_run=False)
        total += deleted
        if progress is not None:
            progress(total)


def list_events(
    services: Services,
    *,
    limit: int,
    status: str | None = None,
    endpoint: str | None = None,
) -> list[dict[str, Any]]:
    """Recent events, newest first, with their outcome; optionally one status or endpoint.

    Raises InvalidInput naming the field for a limit outside 1..1000 or an
    unknown status.
    """
    listing.check_listing(limit, {"status": (status, tables.EVENT_STATUSES)})
    query = sa.select(tables.Event).order_by(tables.Event.id.desc()).limit(limit)
    if status is not None:
        query = query.where(tables.Event.status == status)
    if endpoint is not None:
        query = query.where(tables.Event.endpoint == endpoint)
    with unit_of_work(services.engine, read_only=True) as session:
        rows = session.scalars(query).all()
        return [
            {**_facts(r), "status": r.status, "outcome": r.outcome, "redeliveries": r.redeliveries}
            for r in rows
        ]


def show_event(services: Services, event_id: int) -> dict[str, Any]:
    """One event with the outcome of every trigger."""
    with unit_of_work(services.engine, read_only=True) as session:
        row = session.get(tables.Event, event_id)
        if row is None:
            raise NotFound("event", str(event_id), hint="see `conveyor events list`")
        return {
            **_facts(row),
            "status": row.status,
            "outcome": row.outcome,
            "scan": row.scan_summary,
            "redeliveries": row.redeliveries,
            "duplicate_of": row.duplicate_of,
            "processed_at": row.processed_at,
        }
