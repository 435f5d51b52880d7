"""Identity, live: every new event about a customer is resolved to one golden customer before
the ledger and delivery see it, in the processing transaction.

A `(system, external id)` seen before is that customer, at once. Otherwise the profile is
normalised and screened (placeholder and shared values never identify anyone), its blocking keys
are locked (PostgreSQL: two workers resolving the same person wait for each other instead of
creating two customers) and looked up, and the engine decides: merge, review (a new customer and
a queue item) or new. Merge-first: every profile is kept. The golden record takes each field's
most recent trusted value, and a changed golden record is relayed to the destinations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from handoff.domain.changes import ProfileRelay
from handoff.domain.events import CanonicalEvent, CustomerRef, ProfileBody
from handoff.domain.identity import (
    DEFAULT_THRESHOLDS,
    Candidate,
    DecisionKind,
    NormalizeConfig,
    NormalizedProfile,
    Profile,
    Scorer,
    Thresholds,
    blocking_keys,
    decide,
    default_model,
    normalize,
    screen,
)
from handoff.hub import Hub
from handoff.pipeline.processor import StageBatch
from handoff.store import events as event_store
from handoff.store import identity as store
from handoff.store.identity import Golden
from handoff.store.identity_models import load_current_model

POPULATION_REFRESH = 500  # batches between recounts of the store's size (the model's prior)


def _profile_json(p: Profile) -> dict[str, Any]:
    out = asdict(p)
    for name, value in out.items():
        if isinstance(value, datetime | date):
            out[name] = value.isoformat()
    return out


def _profile_from(d: dict[str, Any]) -> Profile:
    data = dict(d)
    if data.get("seen_at"):
        data["seen_at"] = datetime.fromisoformat(data["seen_at"])
    return Profile(**data)


def _identifies(p: NormalizedProfile) -> bool:
    """Enough to be somebody: a system id, a trusted email or phone, or a full name."""
    return bool(p.source_key or p.email_id or p.phone_id or (p.first_name and p.last_name))


class IdentityStage:
    def __init__(
        self,
        normalize_config: NormalizeConfig,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
    ) -> None:
        self.normalize_config = normalize_config
        self.thresholds = thresholds
        self.model = default_model()
        self._population = 0
        self._batches = 0

    @classmethod
    def from_hub(cls, hub: Hub) -> IdentityStage:
        regions = {
            name: src.config.default_region
            for name, src in hub.sources.items()
            if src.config.default_region
        }
        return cls(NormalizeConfig(regions=regions))

    def _scorer(self, conn: Connection) -> Scorer:
        if self._batches % POPULATION_REFRESH == 0:
            self._population = store.count_customers(conn)
            # the newest model `handoff identity train` stored, else the shipped default
            self.model = load_current_model(conn) or default_model()
        self._batches += 1
        return Scorer(self.model.for_population(max(self._population, 1000)))

    def _prepare(
        self, record_id: str, ref: CustomerRef, event: CanonicalEvent
    ) -> tuple[Profile, NormalizedProfile]:
        body = event.body if isinstance(event.body, ProfileBody) else None
        profile = Profile.from_event(record_id, ref, body, seen_at=event.occurred_at)
        return profile, screen(normalize(profile, self.normalize_config))

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        about = [e for e in batch.events if e.customer is not None]
        if not about:
            return
        now = batch.now
        known = store.customers_of_identities(
            conn,
            [
                (e.customer.system, e.customer.external_id)
                for e in about
                if e.customer and e.customer.external_id
            ],
        )
        scorer = self._scorer(conn)
        touched: dict[int, Golden] = {}
        changed: set[int] = set()
        for event in about:
            ref = event.customer
            assert ref is not None
            profile, norm = self._prepare(event.event_id, ref, event)
            if not _identifies(norm):
                continue  # nothing that could ever find this person again
            keys = blocking_keys(norm)
            source = (ref.system, ref.external_id) if ref.external_id else None
            customer = known.get(source) if source else None
            if customer is None:
                customer = self._resolve(conn, norm, keys, scorer, event, now)
                if source is not None:
                    store.add_identity(conn, source[0], source[1], customer, now)
                    known[source] = customer
            store.add_profile(
                conn,
                record_id=event.event_id,
                customer_id=customer,
                system=ref.system,
                external_id=ref.external_id,
                profile=_profile_json(profile),
                keys=keys,
                now=now,
            )
            batch.customers[event.event_id] = customer
            if customer not in touched:
                touched |= store.golden(conn, [customer])
            if self._survive(touched, customer, profile, norm, ref.system):
                changed.add(customer)
        for customer in sorted(changed):
            record = touched[customer]
            store.save_golden(conn, record, now)
            batch.changes.append(
                ProfileRelay(customer, dict(record.fields), record.version, "identity", now)
            )
        event_store.set_customers(conn, batch.customers)

    def _resolve(
        self,
        conn: Connection,
        norm: NormalizedProfile,
        keys: set[str],
        scorer: Scorer,
        event: CanonicalEvent,
        now: datetime,
    ) -> int:
        store.lock_keys(conn, keys)
        found = store.candidates(conn, keys)
        candidates = [
            Candidate(
                screen(normalize(_profile_from(s.profile), self.normalize_config)),
                str(s.customer_id),
            )
            for s in found
        ]
        decision = decide(norm, candidates, scorer, self.thresholds)
        evidence = decision.match.to_dict() if decision.match is not None else None
        if decision.kind is DecisionKind.MERGE and decision.customer_id is not None:
            customer = int(decision.customer_id)
        else:
            customer = store.new_customer(conn, {}, {}, now)
        store.record_decision(
            conn,
            at=now,
            kind=decision.kind.value,
            rule=decision.rule.value,
            score=decision.score,
            record_id=event.event_id,
            customer_id=customer,
            other_customer_id=int(decision.customer_id)
            if decision.customer_id is not None and int(decision.customer_id) != customer
            else None,
            evidence=evidence,
        )
        owner = {s.record_id: s.customer_id for s in found}
        for item in decision.reviews:
            other = owner.get(item.record_b)
            if other is None or other == customer:
                continue
            store.add_review(
                conn,
                record_id=event.event_id,
                customer_id=customer,
                candidate_customer_id=other,
                candidate_record_id=item.record_b,
                score=item.score,
                rule=item.rule.value,
                reason=item.reason,
                evidence=item.match.to_dict() if item.match is not None else None,
                now=now,
            )
        return customer

    @staticmethod
    def _survive(
        touched: dict[int, Golden],
        customer: int,
        profile: Profile,
        norm: NormalizedProfile,
        system: str,
    ) -> bool:
        """True if the golden record changed (and `touched` holds the new one)."""
        changed = survive(touched[customer], profile, norm, system)
        if changed is None:
            return False
        touched[customer] = changed
        return True


def survive(
    record: Golden, profile: Profile, norm: NormalizedProfile, system: str | None
) -> Golden | None:
    """Most recent trusted value wins, field by field; the new record, or None if unchanged."""
    offered: dict[str, str | None] = {
        "email": norm.email_id,
        "phone": norm.phone_id,
        "first_name": (profile.first_name or "").strip() or None,
        "last_name": (profile.last_name or "").strip() or None,
        "zip": (profile.zip or "").strip() or None,
        "birth_date": norm.dob,
    }
    fields = dict(record.fields)
    sources = dict(record.sources)
    for name, value in offered.items():
        if value and fields.get(name) != value:
            fields[name] = value
            sources[name] = system or "unknown"
    if fields == record.fields:
        return None
    version = record.version + 1 if record.sources else record.version
    return Golden(record.id, fields, sources, version)


def rebuild_golden(
    record: Golden, profiles: Iterable[tuple[dict[str, Any], str | None]], config: NormalizeConfig
) -> Golden:
    """The golden record replayed from these stored profiles alone, in arrival order (unmerge);
    the version moves on from `record`'s so destinations take the new values."""
    current = Golden(record.id, dict.fromkeys(record.fields), {}, record.version)
    for stored, system in profiles:
        profile = _profile_from(stored)
        current = survive(current, profile, screen(normalize(profile, config)), system) or current
    return Golden(record.id, current.fields, current.sources, record.version + 1)
