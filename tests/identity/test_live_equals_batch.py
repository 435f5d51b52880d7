"""Live equals batch: the same profiles resolved one by one by the pipeline's identity stage, in
any arrival order, and all at once by the batch engine (`identity dedupe`) give the same
customers. Hypothesis draws the subset and the order from a pool with the field's noise:
nicknames and typos, every phone format, a household sharing an email and a landline, a
placeholder email from the till, two systems' ids for one person."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from handoff.domain.events import CanonicalEvent, ProfileBody
from handoff.domain.identity import Profile, default_model, resolve_batch
from handoff.hub import Hub
from handoff.store import identity as store
from handoff.store.identity_tables import (
    customers,
    identities,
    identity_decisions,
    identity_keys,
    identity_profiles,
    identity_review,
)
from tests.identity.test_stage import profile, run

POPULATION = 1000  # the live stage never scores against a store smaller than this

POOL: list[CanonicalEvent] = [
    # Ana Silva: till (placeholder email), storefront, CRM with a nickname-free typo, helpdesk
    profile(
        "shop",
        "101",
        1,
        email="test@test.com",
        phone="(415) 555-0132",
        first="Ana",
        last="Silva",
        zip="94107",
    ),
    profile(
        "web",
        "w-5",
        2,
        email="ana.silva@bluewave.net",
        phone="+1 415 555 0132",
        first="Ana",
        last="Silva",
        zip="94107",
    ),
    profile("crm", "c-9", 3, email="Ana.Silva@Bluewave.net", first="Ana", last="Silvia"),
    profile("helpdesk", "z-1", 4, phone="415.555.0132", first="Ana", last="Silva"),
    # Robert Kim, also known as Bob
    profile("shop", "102", 5, email="rkim@fastmail.com", first="Robert", last="Kim", zip="10001"),
    profile("crm", "c-10", 6, email="rkim@fastmail.com", first="Bob", last="Kim"),
    # a household: one email and landline, two people
    profile(
        "shop",
        "103",
        7,
        email="lopez.home@bluewave.net",
        phone="+1 212 555 0188",
        first="Maria",
        last="Lopez",
        zip="10002",
    ),
    profile(
        "crm",
        "c-11",
        8,
        email="lopez.home@bluewave.net",
        phone="(212) 555-0188",
        first="Jorge",
        last="Lopez",
        zip="10002",
    ),
    # a stranger with a similar name and nothing shared
    profile(
        "web", "w-6", 9, email="ana.silveira@postbox.org", first="Ana", last="Silveira", zip="60601"
    ),
    # the same storefront customer seen again, updated
    profile(
        "web", "w-5", 10, email="ana.silva@bluewave.net", first="Ana", last="Silva", zip="94110"
    ),
]


def batch_clusters(events: Sequence[CanonicalEvent]) -> set[frozenset[str]]:
    profiles = []
    for e in events:
        assert e.customer is not None
        body = e.body if isinstance(e.body, ProfileBody) else None
        profiles.append(Profile.from_event(e.event_id, e.customer, body, seen_at=e.occurred_at))
    model = default_model().for_population(POPULATION)
    result = resolve_batch(profiles, model, rescale_prior=False)
    return {frozenset(records) for records in result.clusters().values()}


def live_clusters(hub: Hub, events: Sequence[CanonicalEvent]) -> set[frozenset[str]]:
    with hub.db.write() as conn:
        for table in (
            identity_keys,
            identity_profiles,
            identities,
            identity_decisions,
            identity_review,
            customers,
        ):
            conn.execute(delete(table))
    assigned: dict[str, int] = {}
    for event in events:  # one event per batch: the arrival order is the order drawn
        assigned.update(run(hub, [event]).customers)
    with hub.db.read() as conn:
        final = store.survivors(conn, assigned.values())
    out: dict[int, set[str]] = {}
    for record, customer in assigned.items():
        out.setdefault(final[customer], set()).add(record)
    return {frozenset(records) for records in out.values()}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order=st.permutations(range(len(POOL))), keep=st.integers(min_value=2, max_value=len(POOL)))
def test_any_arrival_order_gives_the_batch_clusters(
    hub_factory: Callable[..., Hub], order: list[int], keep: int
) -> None:
    hub = hub_factory()  # the same database every example; live_clusters empties it first
    events = [POOL[i] for i in order[:keep]]
    assert live_clusters(hub, events) == batch_clusters(events)
