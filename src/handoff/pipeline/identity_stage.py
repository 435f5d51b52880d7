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

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from handoff.config import IdentityConfig, Settings
from handoff.domain.changes import ProfileRelay
from handoff.domain.events import CanonicalEvent, CustomerRef, ProfileBody
from handoff.domain.identity import (
    DEFAULT_GUARDS,
    DEFAULT_THRESHOLDS,
    Candidate,
    DecisionKind,
    GuardConfig,
    NormalizeConfig,
    NormalizedProfile,
    Profile,
    ReviewItem,
    Rule,
    Scorer,
    Thresholds,
    blocking_keys,
    decide,
    default_model,
    normalize,
    screen,
)
from handoff.domain.identity.guards import count_people, exclusive_conflict, identifier_values
from handoff.hub import Hub
from handoff.pipeline.processor import StageBatch
from handoff.store import events as event_store
from handoff.store import identity as store
from handoff.store.identity import Golden
from handoff.store.identity_models import load_current_model

DETERMINISTIC = frozenset({Rule.SAME_SOURCE_ID, Rule.EXACT_EMAIL, Rule.EXACT_PHONE})
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
        guards: GuardConfig = DEFAULT_GUARDS,
        golden_rules: GoldenRules | None = None,
    ) -> None:
        self.normalize_config = normalize_config
        self.thresholds = thresholds
        self.guards = guards
        self.golden_rules = golden_rules or GoldenRules()
        self.model = default_model()
        self._population = 0
        self._batches = 0

    @classmethod
    def from_hub(cls, hub: Hub) -> IdentityStage:
        thresholds, guards = engine_settings(hub.settings.config.identity)
        rules = GoldenRules.of(hub.settings.config.identity)
        return cls(normalize_config(hub.settings), thresholds, guards, rules)

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
        return profile, screen(normalize(profile, self.normalize_config), self.guards)

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
            if customer is not None:
                if customer not in touched:
                    touched |= store.golden(conn, [customer])
                offered = survive(touched[customer], profile, norm, ref.system, self.golden_rules)
                if offered is not None:
                    joined = len(batch.merges)
                    customer, norm = self._rejoin(
                        conn, norm, keys, scorer, event, batch, customer, now
                    )
                    if len(batch.merges) > joined:
                        self._after_join(conn, batch.merges[joined:], customer, known, touched)
                        changed = {c for c in changed if c in touched} | {customer}
            else:
                joined = len(batch.merges)
                customer, norm = self._resolve(conn, norm, keys, scorer, event, batch, now)
                if len(batch.merges) > joined:
                    self._after_join(conn, batch.merges[joined:], customer, known, touched)
                    changed = {c for c in changed if c in touched} | {customer}
                if source is not None:
                    store.add_identity(conn, source[0], source[1], customer, now)
                    known[source] = customer
            if norm.flags:  # a value found shared just now no longer indexes this profile
                keys = blocking_keys(norm)
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
            record = survive(touched[customer], profile, norm, ref.system, self.golden_rules)
            if record is not None:
                touched[customer] = record
                changed.add(customer)
        if batch.merges:  # earlier events of this batch may name a customer joined since
            final = store.survivors(conn, batch.customers.values())
            batch.customers = {e: final[c] for e, c in batch.customers.items()}
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
        batch: StageBatch,
        now: datetime,
    ) -> tuple[int, NormalizedProfile]:
        found, norm, candidates = self._look_up(conn, norm, keys)
        decision = decide(norm, candidates, scorer, self.thresholds, self.guards)
        evidence = decision.match.to_dict() if decision.match is not None else None
        owner = {s.record_id: s.customer_id for s in found}
        bridged: list[tuple[ReviewItem, int]] = []
        if decision.kind is DecisionKind.MERGE and decision.customer_id is not None:
            customer = int(decision.customer_id)
            customer, bridged = self._bridge(conn, decision.reviews, customer, owner, batch, now)
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
        self._record_joins(conn, bridged, event.event_id, customer, now)
        done = {item.record_b for item, _ in bridged}
        for item in decision.reviews:
            other = owner.get(item.record_b)
            if other is None or other == customer or item.record_b in done:
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
        return customer, norm

    def _look_up(
        self, conn: Connection, norm: NormalizedProfile, keys: set[str]
    ) -> tuple[list[store.StoredProfile], NormalizedProfile, list[Candidate]]:
        """Lock the blocking keys, fetch the candidates, and apply the frequency rule live: an
        email, phone or address that more distinct people than `max_people_per_value` already
        use here (a store associate's email, a shop's landline) stops identifying anyone, for
        the new profile and its candidates alike, as in a batch."""
        store.lock_keys(conn, keys)
        found = store.candidates(conn, keys)
        known = [
            screen(normalize(_profile_from(s.profile), self.normalize_config), self.guards)
            for s in found
        ]
        shared = shared_values(norm, known, self.guards)
        if shared:
            norm = screen(norm, self.guards, shared)
            known = [screen(p, self.guards, shared) for p in known]
        candidates = [Candidate(p, str(s.customer_id)) for p, s in zip(known, found, strict=True)]
        return found, norm, candidates

    def _rejoin(
        self,
        conn: Connection,
        norm: NormalizedProfile,
        keys: set[str],
        scorer: Scorer,
        event: CanonicalEvent,
        batch: StageBatch,
        customer: int,
        now: datetime,
    ) -> tuple[int, NormalizedProfile]:
        """A known customer's profile that brings new values is scored too: it may now match
        another customer as strongly as a merge needs (a storefront account that adds the
        phone the till had), and then the two are joined, as the batch engine would."""
        found, norm, candidates = self._look_up(conn, norm, keys)
        if all(s.customer_id == customer for s in found):
            return customer, norm
        decision = decide(norm, candidates, scorer, self.thresholds, self.guards)
        if decision.kind is not DecisionKind.MERGE or decision.customer_id is None:
            return customer, norm
        items = list(decision.reviews)
        if int(decision.customer_id) != customer and decision.matched_record_id is not None:
            winner = ReviewItem(
                norm.record_id,
                decision.matched_record_id,
                decision.score or 0.0,
                decision.rule,
                "best match",
                decision.match,
            )
            items.insert(0, winner)
        owner = {s.record_id: s.customer_id for s in found}
        survivor, joins = self._bridge(conn, items, customer, owner, batch, now)
        self._record_joins(conn, joins, event.event_id, survivor, now)
        return survivor, norm

    @staticmethod
    def _record_joins(
        conn: Connection,
        joins: list[tuple[ReviewItem, int]],
        record_id: str,
        survivor: int,
        now: datetime,
    ) -> None:
        for item, absorbed in joins:
            store.record_decision(
                conn,
                at=now,
                kind="merge",
                rule=f"bridge:{item.rule.value}",
                score=item.score,
                record_id=record_id,
                customer_id=survivor,
                other_customer_id=absorbed,
                evidence=item.match.to_dict() if item.match is not None else None,
            )

    def _bridge(
        self,
        conn: Connection,
        items: Sequence[ReviewItem],
        customer: int,
        owner: dict[str, int],
        batch: StageBatch,
        now: datetime,
    ) -> tuple[int, list[tuple[ReviewItem, int]]]:
        """A new profile that matches two customers as strongly as a merge needs joins them:
        the batch engine's transitive closure, live. Each join still passes the cluster guards
        (two ids of one exclusive system, the maximum cluster size) and never joins two
        customers a conflict or a person has kept apart; what fails stays in review. Returns
        the surviving customer (the oldest) and the joins made."""
        joins: list[tuple[ReviewItem, int]] = []
        for item in items:
            strong = item.rule in DETERMINISTIC or (
                item.rule is Rule.PROBABILISTIC and item.score >= self.thresholds.merge
            )
            other = owner.get(item.record_b)
            if not strong or other is None:
                continue
            other = store.survivor_of(conn, other)
            if other == customer:
                continue
            if store.kept_apart(conn, customer, other):
                continue
            mine, theirs = store.cluster_keys(conn, customer), store.cluster_keys(conn, other)
            if exclusive_conflict(mine[0], theirs[0], self.guards) is not None:
                continue
            if mine[1] + theirs[1] + 1 > self.guards.max_cluster_size:
                continue
            survivor, absorbed = min(customer, other), max(customer, other)
            store.merge_customers(conn, absorbed, survivor, now)
            batch.merges.append((absorbed, survivor))
            joins.append((item, absorbed))
            customer = survivor
        return customer, joins

    def _after_join(
        self,
        conn: Connection,
        joins: list[tuple[int, int]],
        survivor: int,
        known: dict[tuple[str, str], int],
        touched: dict[int, Golden],
    ) -> None:
        """After customers were joined: ids seen in this batch follow the survivor, and its
        golden record is replayed from every profile it now holds."""
        absorbed = {a for a, _ in joins}
        for key, cid in known.items():
            if cid in absorbed:
                known[key] = survivor
        for cid in absorbed:
            touched.pop(cid, None)
        base = store.golden(conn, [survivor])[survivor]
        profiles = [(p.profile, p.system) for p in store.cluster_profiles(conn, survivor)]
        touched[survivor] = rebuild_golden(
            base, profiles, self.normalize_config, self.golden_rules, self.guards
        )


@dataclass(frozen=True)
class GoldenRules:
    """Which value of a field the golden record keeps (`[identity] survivorship`, `trust`).

    most_recent (the default): the newest trusted value; most_trusted: the value from the
    system highest in `trust` (unlisted systems rank last; among equals, the newest);
    first_seen: the first trusted value, kept (a birth date a later typo must not replace)."""

    rules: Mapping[str, str] = field(default_factory=dict)
    trust: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: IdentityConfig) -> GoldenRules:
        return cls(dict(config.survivorship), tuple(config.trust))

    def rank(self, system: str | None) -> int:
        return self.trust.index(system) if system in self.trust else len(self.trust)

    def takes(self, name: str, current: str | None, source: str | None, system: str | None) -> bool:
        rule = self.rules.get(name, "most_recent")
        if current is None or rule == "most_recent":
            return True
        if rule == "first_seen":
            return False
        return self.rank(system) <= self.rank(source)


def normalize_config(settings: Settings) -> NormalizeConfig:
    """The phone region per source (`default_region`), for the live stage and the batch."""
    regions = {
        name: src.default_region
        for name, src in settings.config.sources.items()
        if src.default_region
    }
    return NormalizeConfig(regions=regions)


def engine_settings(config: IdentityConfig) -> tuple[Thresholds, GuardConfig]:
    """The engine's thresholds and guards from `[identity]`: the live stage and
    `identity dedupe` decide with the same."""
    thresholds = Thresholds(merge=config.merge_threshold, review=config.review_threshold)
    base = DEFAULT_GUARDS
    guards = dataclasses.replace(
        base,
        max_people_per_value=config.max_people_per_value,
        max_cluster_size=config.max_cluster_size,
        exclusive_systems=frozenset(config.exclusive_systems),
        placeholder_emails=base.placeholder_emails
        | {e.strip().lower() for e in config.placeholder_emails},
        placeholder_email_domains=base.placeholder_email_domains
        | {d.strip().lower() for d in config.placeholder_email_domains},
        placeholder_phones=base.placeholder_phones
        | {"".join(c for c in p if c.isdigit()) for p in config.placeholder_phones},
        household_guard=config.household_guard,
    )
    return thresholds, guards


def survive(
    record: Golden,
    profile: Profile,
    norm: NormalizedProfile,
    system: str | None,
    rules: GoldenRules | None = None,
) -> Golden | None:
    """Each field's value by its survivorship rule (trusted values only: a placeholder email
    never becomes the golden email); the new record, or None if unchanged."""
    rules = rules or GoldenRules()
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
        current = fields.get(name)
        if value and current != value and rules.takes(name, current, sources.get(name), system):
            fields[name] = value
            sources[name] = system or "unknown"
    if fields == record.fields and sources == record.sources:
        return None
    version = record.version + 1 if record.sources else record.version
    return Golden(record.id, fields, sources, version)


def rebuild_golden(
    record: Golden,
    profiles: Iterable[tuple[dict[str, Any], str | None]],
    config: NormalizeConfig,
    rules: GoldenRules | None = None,
    guards: GuardConfig = DEFAULT_GUARDS,
) -> Golden:
    """The golden record replayed from these stored profiles alone, in arrival order (unmerge,
    joins); the version moves on from `record`'s so destinations take the new values."""
    current = Golden(record.id, dict.fromkeys(record.fields), {}, record.version)
    for stored, system in profiles:
        profile = _profile_from(stored)
        norm = screen(normalize(profile, config), guards)
        current = survive(current, profile, norm, system, rules) or current
    return Golden(record.id, current.fields, current.sources, record.version + 1)


def shared_values(
    new: NormalizedProfile, known: Sequence[NormalizedProfile], guards: GuardConfig
) -> set[tuple[str, str]]:
    """The new profile's identifier values that the known profiles holding them show to be
    used by more distinct people than the limit (the batch engine's frequency rule, counted
    over the candidates the store returned for them)."""
    limit = guards.max_people_per_value
    mine = [iv for iv in identifier_values(new, guards) if iv[0] != "source"]
    if not mine or len(known) < limit:
        return set()
    theirs = [set(identifier_values(p, guards)) for p in known]
    shared: set[tuple[str, str]] = set()
    for value in mine:
        people = [_person(p) for p, values in zip(known, theirs, strict=True) if value in values]
        people.append(_person(new))
        if count_people([x for x in people if x is not None], limit) > limit:
            shared.add(value)
    return shared


def _person(p: NormalizedProfile) -> tuple[str | None, str | None, str | None, str | None] | None:
    if p.first_name is None and p.last_name is None and p.dob is None:
        return None  # nothing to tell people apart by
    return (p.first_name, p.last_name, p.dob, p.first_token)
