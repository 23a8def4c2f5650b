"""The group-commit inbox writer: concurrent deliveries land exactly once, failures store nothing."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from conveyor import wiring
from conveyor.config import loader
from conveyor.core.events import Headers
from conveyor.service import events
from conveyor.service.context import Services
from conveyor.service.inbox_writer import InboxWriter, WriterClosed
from conveyor.store import events as inbox
from conveyor.store import schema, tables
from conveyor.store.database import core_transaction, unit_of_work
from conveyor.testing import InMemoryRegistry

HOST = "registry.test:5000"
SECRET = "s3cret"
HEADERS = Headers({"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"})
CONFIG = textwrap.dedent(
    f"""\
    registries:
      main: {{url: "https://{HOST}"}}
    webhooks:
      registry: {{format: distribution, registry: main, secret_env: HOOK_SECRET}}
    """
)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        schema.upgrade(url)
    else:
        url = str(request.getfixturevalue("postgres_url"))
    (tmp_path / "conveyor.yaml").write_text(CONFIG)
    definitions = loader.load(tmp_path / "conveyor.yaml")
    built = Services(
        definitions=definitions,
        engine=wiring.open_database(url),
        registries=wiring.ConfiguredRegistries(
            definitions.registries, {}, lambda d, c: InMemoryRegistry(host=HOST)
        ),
        data_dir=tmp_path / "data",
        environ={"HOOK_SECRET": SECRET},
    )
    yield built
    built.engine.dispose()


def _body(delivery_id: str, tag: str) -> bytes:
    digest = "sha256:" + f"{abs(hash(tag)):064x}"[-64:]
    event = {
        "id": delivery_id,
        "timestamp": "2026-11-29T10:00:00Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "repository": "team/myapp",
            "tag": tag,
        },
        "request": {"host": HOST},
    }
    return json.dumps({"events": [event]}).encode()


def _prepared(services: Services, delivery_id: str, tag: str) -> events.Prepared:
    return events.prepare(services, "registry", headers=HEADERS, body=_body(delivery_id, tag))


def _rows(services: Services) -> dict[str, tables.Event]:
    with unit_of_work(services.engine, read_only=True) as session:
        return {e.delivery_id: e for e in session.scalars(sa.select(tables.Event)).all()}


class HeldStore:
    """events.store, except that the first call waits until released: deliveries pile up."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []

    def __call__(
        self, services: Services, batch: Sequence[events.Prepared]
    ) -> list[events.Ingested]:
        self.sizes.append(len(batch))
        self.entered.set()
        assert self.release.wait(10)
        return events.store(services, batch)


def test_concurrent_deliveries_land_once_each_in_few_transactions(services: Services) -> None:
    """40 new deliveries, 40 redeliveries of them and 20 same-content copies, from 16 threads.

    Every new delivery is stored once and accepted; every redelivery counts on
    its original and adds nothing; every copy is stored as a duplicate of the
    original. Deliveries that wait share transactions.
    """
    store = HeldStore()
    writer = InboxWriter(services, store=store)
    first = writer.submit(_prepared(services, "warm", "myapp-warm"))
    assert store.entered.wait(10)
    # While the first transaction is held, everything else queues up: each delivery
    # twice, from 16 threads in any order, then a same-content copy of 20 of them.
    twice = [_prepared(services, f"d{i}", f"myapp-V{i}") for i in range(40)] * 2
    copies = [_prepared(services, f"copy{i}", f"myapp-V{i}") for i in range(20)]
    with ThreadPoolExecutor(16) as pool:
        futures = list(pool.map(writer.submit, twice))
    futures += [writer.submit(copy) for copy in copies]
    store.release.set()
    results = [future.result(10) for future in futures]
    assert first.result(10).accepted
    writer.close()

    rows = _rows(services)
    assert len(rows) == 1 + 40 + 20
    assert sum(len(r.accepted) for r in results) == 40
    assert sum(r.duplicates for r in results) == 60
    accepted_ids = sorted(i for r in results for i in r.accepted)
    assert accepted_ids == sorted(rows[f"d{i}"].id for i in range(40))
    for i in range(40):
        assert (rows[f"d{i}"].status, rows[f"d{i}"].redeliveries) == ("pending", 1)
    for i in range(20):
        copy = rows[f"copy{i}"]
        assert (copy.status, copy.duplicate_of) == ("duplicate", rows[f"d{i}"].id)
    assert len(store.sizes) < len(futures), "deliveries that waited shared transactions"
    assert max(store.sizes) > 1


def test_a_failed_commit_answers_every_waiter_and_stores_nothing(services: Services) -> None:
    """The database failing the batch's transaction: each request gets the error, no row stays."""

    def failing(services: Services, batch: Sequence[events.Prepared]) -> list[events.Ingested]:
        with core_transaction(services.engine) as connection:
            received = [(d, p.received_at) for p in batch for d in p.deliveries]
            assert len(inbox.record_deliveries(connection, received)) == len(batch)
            raise exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    writer = InboxWriter(services, store=failing)
    futures = [writer.submit(_prepared(services, f"d{i}", f"myapp-V{i}")) for i in range(5)]
    for future in futures:
        with pytest.raises(exc.OperationalError):
            future.result(10)
    writer.close()
    assert _rows(services) == {}


def test_one_bad_delivery_does_not_fail_the_others(services: Services) -> None:
    """A data error in a batch is retried delivery by delivery: only the bad one fails."""
    store = HeldStore()

    def picky(services: Services, batch: Sequence[events.Prepared]) -> list[events.Ingested]:
        if any(d.delivery_id == "bad" for p in batch for d in p.deliveries):
            raise exc.DataError("INSERT", {}, Exception("value too long"))
        return store(services, batch)

    writer = InboxWriter(services, store=picky)
    held = writer.submit(_prepared(services, "first", "myapp-V0"))
    assert store.entered.wait(10)
    good = [writer.submit(_prepared(services, f"d{i}", f"myapp-V{i}")) for i in range(1, 4)]
    bad = writer.submit(_prepared(services, "bad", "myapp-V9"))
    store.release.set()
    held.result(10)
    assert all(len(f.result(10).accepted) == 1 for f in good)
    with pytest.raises(exc.DataError):
        bad.result(10)
    writer.close()
    assert sorted(_rows(services)) == ["d1", "d2", "d3", "first"]
    assert store.sizes == [1, 1, 1, 1], "after the batch failed, each was stored alone"


def test_close_stores_what_was_submitted_then_refuses(services: Services) -> None:
    """Closing drains the queue; a delivery submitted afterwards is refused, not lost silently."""
    writer = InboxWriter(services)
    futures = [writer.submit(_prepared(services, f"d{i}", f"myapp-V{i}")) for i in range(10)]
    writer.close()
    assert all(f.done() for f in futures)
    assert len(_rows(services)) == 10
    with pytest.raises(WriterClosed):
        writer.submit(_prepared(services, "late", "myapp-V99"))
