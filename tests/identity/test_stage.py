"""The live identity stage on both databases: one golden customer per person, every system's id
mapped, placeholders never merging, uncertain pairs queued, golden fields relayed, and four
workers on PostgreSQL resolving the same people at once without creating duplicates."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from handoff.domain.changes import ProfileRelay
from handoff.domain.events import CanonicalEvent, CustomerRef, EventDraft, EventType, ProfileBody
from handoff.hub import Hub
from handoff.pipeline.identity_stage import IdentityStage
from handoff.pipeline.processor import StageBatch
from handoff.store import identity as store
from handoff.store.identity_tables import customers, identity_keys, identity_review

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def profile(
    source: str,
    external_id: str | None,
    n: int,
    *,
    email: str | None = None,
    phone: str | None = None,
    first: str | None = None,
    last: str | None = None,
    zip: str | None = None,
) -> CanonicalEvent:
    ref = CustomerRef(system=source, external_id=external_id, email=email, phone=phone)
    body = ProfileBody(email=email, phone=phone, first_name=first, last_name=last, zip=zip)
    return EventDraft(
        source_event_id=f"{source}-{external_id}-{n}",
        type=EventType.PROFILE_CAPTURED,
        occurred_at=T0 + timedelta(minutes=n),
        customer=ref,
        body=body,
    ).stamp(source=source, received_at=T0 + timedelta(minutes=n))


def run(hub: Hub, events: Sequence[CanonicalEvent]) -> StageBatch:
    """The stage in one write transaction, as the processor runs it (events stored first)."""
    batch = StageBatch(list(events), T0 + timedelta(days=1))
    with hub.db.write() as conn:
        IdentityStage.from_hub(hub).handle(conn, batch)
    return batch


def golden_count(hub: Hub) -> int:
    with hub.db.read() as conn:
        return store.count_customers(conn)


def test_one_person_across_systems_is_one_customer(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory()
    till = profile("shop", "101", 1, email="Ana.Silva@Bluewave.net ", first="Ana", last="Silva")
    crm = profile("crm", "c-9", 2, email="ana.silva@bluewave.net", phone="+61 2 9374 4000")
    helpdesk = profile("helpdesk", "z-7", 3, phone="+61293744000", first="Ana", last="Silva")
    batch = run(hub, [till, crm, helpdesk])
    ids = {batch.customers[e.event_id] for e in (till, crm, helpdesk)}
    assert len(ids) == 1
    [customer] = ids
    with hub.db.read() as conn:
        found = store.contact(conn, customer)
    assert found is not None
    assert found.email == "ana.silva@bluewave.net" and found.phone == "+61293744000"
    assert found.external_ids == {"shop": "101", "crm": "c-9", "helpdesk": "z-7"}
    relays = [c for c in batch.changes if isinstance(c, ProfileRelay)]
    assert relays and relays[-1].customer_id == customer
    assert relays[-1].fields["email"] == "ana.silva@bluewave.net"
    # a later event from a known system id is that customer at once
    again = run(hub, [profile("crm", "c-9", 9)])
    assert set(again.customers.values()) == {customer}


def test_placeholder_emails_never_merge_strangers(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory()
    a = profile("shop", "1", 1, email="test@test.com", first="Maria", last="Lopez", zip="2000")
    b = profile("shop", "2", 2, email="test@test.com", first="John", last="Chen", zip="3000")
    batch = run(hub, [a, b])
    assert batch.customers[a.event_id] != batch.customers[b.event_id]
    with hub.db.read() as conn:
        assert store.contact(conn, batch.customers[a.event_id]).email is None  # type: ignore[union-attr]


def test_a_shared_email_with_a_different_first_name_waits_for_review(
    hub_factory: Callable[..., Hub],
) -> None:
    hub = hub_factory()
    a = profile("shop", "1", 1, email="family@bluewave.net", first="Maria", last="Lopez")
    b = profile("crm", "2", 2, email="family@bluewave.net", first="Jorge", last="Lopez")
    batch = run(hub, [a, b])
    assert batch.customers[a.event_id] != batch.customers[b.event_id]
    with hub.db.read() as conn:
        queue = store.list_review(conn)
    assert len(queue) == 1
    assert {queue[0].customer_id, queue[0].candidate_customer_id} == set(batch.customers.values())


def test_the_same_event_twice_changes_nothing(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory()
    e = profile("shop", "1", 1, email="ana@bluewave.net", first="Ana", last="Silva")
    first = run(hub, [e])
    second = run(hub, [e])
    assert first.customers == second.customers
    assert not [c for c in second.changes if isinstance(c, ProfileRelay)]
    assert golden_count(hub) == 1


def test_four_workers_resolving_the_same_people_create_no_duplicates(
    hub_factory: Callable[..., Hub], db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("concurrent writers are a PostgreSQL matter (SQLite has one writer)")
    hub = hub_factory()
    people = 25
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i in range(people):
                # each worker sees each person from its own system: only the email links them
                e = profile(f"src{w}", f"{w}-{i}", 100 * w + i, email=f"p{i}@bluewave.net")
                run(hub, [e])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with hub.db.read() as conn:
        alive = conn.execute(
            select(func.count()).select_from(customers).where(customers.c.merged_into.is_(None))
        ).scalar_one()
        reviews = conn.execute(select(func.count()).select_from(identity_review)).scalar_one()
    assert alive == people
    assert reviews == 0


def test_an_email_many_people_use_stops_identifying_live(hub_factory: Callable[..., Hub]) -> None:
    """A store associate types the shop's address for every customer who declines to give one:
    past `max_people_per_value` distinct people the address stops identifying anyone, so the
    review queue is not flooded and it stops indexing new profiles."""
    hub = hub_factory()
    names = [
        ("Ana", "Silva"),
        ("Bo", "Kim"),
        ("Carla", "Diaz"),
        ("Dev", "Patel"),
        ("Eve", "Novak"),
        ("Femi", "Adeyemi"),
        ("Gus", "Berg"),
        ("Hana", "Sato"),
        ("Ivo", "Horvat"),
        ("Jo", "March"),
    ]
    events = [
        profile(
            "shop", str(200 + i), i, email="FrontDesk@OakStreetShoes.com", first=first, last=last
        )
        for i, (first, last) in enumerate(names)
    ]
    batch = run(hub, events)
    assert len({batch.customers[e.event_id] for e in events}) == len(names)
    with hub.db.read() as conn:
        reviews = store.list_review(conn, "open", 1000)
        keyed = conn.execute(
            select(func.count())
            .select_from(identity_keys)
            .where(identity_keys.c.key == "em:frontdesk@oakstreetshoes.com")
        ).scalar_one()
        golden = store.contact(conn, batch.customers[events[-1].event_id])
    limit = 6  # GuardConfig.max_people_per_value
    late = {e.event_id for e in events[limit + 1 :]}
    assert reviews and not [r for r in reviews if r.record_id in late]
    assert keyed == limit  # the first six profiles index it; from the seventh person on, not
    assert golden is not None and golden.email is None
