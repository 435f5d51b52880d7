"""Labelled scenarios for reconciliation: the simulator's world, its exports and fault labels.

`build(config)` skips the webhook delivery plan (reconciliation judges what the systems hold,
not how webhooks travelled), so a scenario costs a fraction of `Simulation.build`. `extra`
faults the simulator does not inject (timing, identity, drift, redemptions, in-flight orders)
are added to the exported files here, each with its label.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from handoff.sim.clock import SimClock
from handoff.sim.delivery import DeliveryReport
from handoff.sim.exports import write_exports
from handoff.sim.faults import apply_faults
from handoff.sim.scenario import generate, iso
from handoff.sim.scenario_config import (
    BusinessConfig,
    FaultConfig,
    NoiseConfig,
    ScenarioConfig,
    no_faults,
)
from handoff.sim.stack import Simulation, build_apis
from handoff.sim.truth import write_truth

SIM_DOMAINS = ("example.com", "example.net", "example.org")
EXPORTS = (
    "orders",
    "refunds",
    "loyalty_events",
    "loyalty_members",
    "crm_contacts",
    "pos_customers",
    "helpdesk_users",
    "comms_profiles",
)
RECON_CLASSES = (
    "missing",
    "timing",
    "value",
    "premature",
    "unreversed",
    "duplicate",
    "identity",
    "drift",
    "missing_profile",
    "crm_stale",
    "flag",
)


def config(
    seed: int, customers: int = 150, faults: FaultConfig | None = None, **program: Any
) -> ScenarioConfig:
    base = ScenarioConfig()
    business = BusinessConfig(seed=seed, customers=customers, days=60)
    cfg = base.model_copy(update={"scenario": business})
    if faults is not None:
        cfg = cfg.model_copy(update={"faults": faults})
    if program:
        cfg = cfg.model_copy(update={"program": cfg.program.model_copy(update=program)})
    return cfg


def all_faults() -> FaultConfig:
    """Every fault the simulator knows, at rates that give each class several instances."""
    return FaultConfig(
        silent_pos_stores=("S04",),
        loyalty_crm_relay_off=False,
        drop_rate=0.02,
        duplicate_rate=0.02,
        slow_ack_rate=0.02,
        out_of_order_rate=0.4,
        erp_loyalty_on_placement_rate=0.05,
        points_on_gross_rate=0.05,
        erp_loyalty_drop_rate=0.05,
        refund_deduction_skip_rate=0.3,
        loyalty_duplicate_earn_rate=0.04,
        enrichment_overwrite_rate=0.1,
        vip_not_propagated_rate=0.4,
    )


@dataclass
class Label:
    cls: str
    key: str
    handoff: str
    source: str  # sim | extra


@dataclass
class Scenario:
    root: Path
    sim: Simulation
    labels: list[Label] = field(default_factory=list)
    ambiguous: set[str] = field(default_factory=set)

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def files(self, only: Iterable[str] = EXPORTS) -> dict[str, Path]:
        return {name: self.exports / f"{name}.csv" for name in only}


def build(cfg: ScenarioConfig, root: Path) -> Scenario:
    scenario = generate(cfg)
    world = apply_faults(scenario)
    sim = Simulation(cfg, scenario, world, [], DeliveryReport([], {}, {}))
    write_truth(root / "truth", world, ())
    apis = build_apis(SimClock(scenario.end), sim)
    write_exports(
        root / "exports",
        erp=apis.erp,
        loyalty=apis.loyaltylion,
        crm=apis.hubspot,
        shop=apis.shopify,
        helpdesk=apis.zendesk,
        comms=apis.klaviyo,
        as_of=scenario.end,
    )
    out = Scenario(root, sim)
    ambiguous = ambiguous_flag_refs(sim) | unrelayable_contacts(sim)
    out.ambiguous = ambiguous
    for label in world.labels_with_ids():
        key = label_key(label.cls, label.ref, label.order_id, label.customer_id, label.contact_id)
        if key is None:
            continue
        if label.cls == "value" and label.expected == label.actual:
            continue  # tax and shipping added nothing after rounding: no difference to find
        if label.cls in ("flag", "crm_stale") and key in ambiguous:
            continue
        out.labels.append(Label(label.cls, key, label.handoff, "sim"))
    return out


def unrelayable_contacts(sim: Simulation) -> set[str]:
    """CRM contacts of a person who is a loyalty member, through none of whose store customer
    ids the relay can reach the member (a contact typed in the CRM by hand, or a duplicate
    store account that never enrolled): the simulator labels nothing, yet the exports show the
    member's loyalty fields missing there. Whether that is a finding
    depends on a link the truth does not record; such contacts are judged on neither side."""
    scenario = sim.scenario
    members = {str(m.member_id) for m in sim.world.loyalty.members}
    member_people = {c.person_id for c in scenario.customers if str(c.shopify_id) in members}
    refs: set[str] = set()
    for contact in scenario.contacts:
        relayed = any(str(sid) in members for sid in contact.shopify_ids)
        if not relayed and member_people & set(contact.person_ids):
            refs.add(f"crm:{contact.contact_id}")
    return refs


def ambiguous_flag_refs(sim: Simulation) -> set[str]:
    """Destination records whose expected VIP hinges on a CRM tick on a contact shared by
    several people: the exports cannot say which of them the CRM user meant."""
    scenario = sim.scenario
    shared_manual = {
        v.contact_id
        for v in scenario.manual_vips
        if len(next(c for c in scenario.contacts if c.contact_id == v.contact_id).person_ids) > 1
    }
    people: set[str] = set()
    for contact in scenario.contacts:
        if contact.contact_id in shared_manual:
            people.update(contact.person_ids)
    refs = {f"pos:{c.shopify_id}" for c in scenario.customers if c.person_id in people}
    for profile in (*scenario.helpdesk_users, *scenario.comms_profiles):
        if people & set(profile.person_ids):
            refs.add(f"{profile.system}:{profile.external_id}")
    # a helpdesk user or email profile is keyed by email, so a household sharing the address
    # shares it only if both people signed up: when their VIP status differs, who signed up
    # decides the expected flag and no export records it
    from handoff.sim.truth import expected_by_person

    vip = {pid: state.is_vip for pid, state in expected_by_person(scenario).items()}
    by_email: dict[str, set[str]] = {}
    for person in scenario.people:
        by_email.setdefault(person.email, set()).add(person.person_id)
    for profile in (*scenario.helpdesk_users, *scenario.comms_profiles):
        sharing = by_email.get(profile.email, set())
        if len({vip.get(pid, False) for pid in sharing}) > 1:
            refs.add(f"{profile.system}:{profile.external_id}")
    return refs


def label_key(
    cls: str, ref: str, order_id: str | None, customer_id: str | None, contact_id: str | None
) -> str | None:
    if cls in ("missing", "premature", "value", "duplicate", "timing", "identity"):
        return order_id
    if cls == "unreversed":
        return ref.removeprefix("refund:")
    if cls == "missing_profile":
        return f"loyalty:{customer_id}"
    if cls == "crm_stale":
        return f"crm:{contact_id}"
    if cls == "flag":
        return ref
    if cls == "drift":
        return ref
    return None


def finding_key(row: dict[str, str]) -> str:
    cls = row["class"]
    if cls in ("missing", "premature", "value", "duplicate", "timing", "identity"):
        return row["order_id"]
    return row["ref"]


# --- extra faults, written into the exported files -------------------------------------------


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def add_extra_faults(s: Scenario, every: int = 9) -> None:
    """Inject timing, identity, drift, redemptions and expiries into the loyalty exports.

    Chosen among clean, single-earn orders (no simulator label), every `every`-th one, in turn:
    a late earn (timing), an earn on another customer's member (identity), a member balance
    off its events (drift), a redemption and an expiry (legitimate: no finding)."""
    ev_cols, events = read(s.exports / "loyalty_events.csv")
    mem_cols, members = read(s.exports / "loyalty_members.csv")
    labelled = {lab.key for lab in s.labels}
    earn_count = Counter(e["order_id"] for e in events if e["kind"] == "earn")
    refunded = {e["order_id"] for e in events if e["kind"] == "reverse"}
    _, refunds = read(s.exports / "refunds.csv")
    refunded |= {r["order_id"] for r in refunds}
    by_member = {m["member_id"]: m for m in members}
    original = {k: m["points_balance"] for k, m in by_member.items()}
    member_ids = sorted(by_member)
    candidates = [
        e
        for e in events
        if e["kind"] == "earn"
        and earn_count[e["order_id"]] == 1
        and e["order_id"] not in labelled
        and e["order_id"] not in refunded
        and int(e["points"]) > 0
    ]
    touched_members: set[str] = set()
    serial = 0
    for n, event in enumerate(candidates):
        if n % every:
            continue
        member = event["member_id"]
        if member in touched_members:
            continue
        kind = ("timing", "identity", "drift", "redeem", "expire")[(n // every) % 5]
        if kind == "timing":
            event["occurred_at"] = iso(parse(event["occurred_at"]) + timedelta(hours=30))
            s.labels.append(Label("timing", event["order_id"], "erp->loyalty", "extra"))
        elif kind == "identity":
            other = member_ids[(member_ids.index(member) + 7) % len(member_ids)]
            if other in touched_members:
                continue
            pts = int(event["points"])
            event["member_id"] = other
            by_member[member]["points_balance"] = str(
                int(by_member[member]["points_balance"]) - pts
            )
            by_member[other]["points_balance"] = str(int(by_member[other]["points_balance"]) + pts)
            touched_members.add(other)
            s.labels.append(Label("identity", event["order_id"], "erp->loyalty", "extra"))
        elif kind == "drift":
            by_member[member]["points_balance"] = str(int(by_member[member]["points_balance"]) + 37)
            s.labels.append(Label("drift", member, "erp->loyalty", "extra"))
        else:
            serial += 1
            pts = min(int(by_member[member]["points_balance"]), 25)
            if pts <= 0:
                continue
            events.append(
                {
                    "event_id": f"LLT-X{serial:05d}",
                    "member_id": member,
                    "kind": kind,
                    "points": str(-pts),
                    "occurred_at": iso(parse(event["occurred_at"]) + timedelta(hours=2)),
                    "order_id": "",
                    "email": event.get("email", ""),
                    "reason": "reward" if kind == "redeem" else "expiry",
                    "vests_at": "",
                }
            )
            by_member[member]["points_balance"] = str(
                int(by_member[member]["points_balance"]) - pts
            )
        touched_members.add(member)
    write(s.exports / "loyalty_events.csv", ev_cols, events)
    write(s.exports / "loyalty_members.csv", mem_cols, members)
    # the loyalty → CRM relay copies what the platform holds: follow the changed balances
    # (the relay's own link: the contact's Shopify customers, whose ids are the member ids)
    crm_cols, contacts = read(s.exports / "crm_contacts.csv")
    mirrors = {str(c.contact_id): {str(i) for i in c.shopify_ids} for c in s.sim.scenario.contacts}
    for contact in contacts:
        for member_id in sorted(mirrors.get(contact["contact_id"], set()) & set(original)):
            before, now = original[member_id], by_member[member_id]["points_balance"]
            if now != before and contact["points_balance"] == before:
                contact["points_balance"] = now
    write(s.exports / "crm_contacts.csv", crm_cols, contacts)


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    wrong_handoff: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score(
    labels: list[Label],
    findings: list[dict[str, str]],
    *,
    in_flight: set[str] = frozenset(),  # type: ignore[assignment]
    ambiguous: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[dict[str, Score], list[str]]:
    """Per-class precision and recall of the findings against the labels; the misses listed.

    Labels of things still inside the timing tolerance (`in_flight`: the order or refund ids
    the run cleared) are not expected as findings; `ambiguous` destination records are left
    out on both sides."""
    truth: dict[tuple[str, str], set[str]] = {}
    for lab in labels:
        if lab.key in in_flight and lab.cls in ("missing", "unreversed"):
            continue
        truth.setdefault((lab.cls, lab.key), set()).add(lab.handoff)
    found: dict[tuple[str, str], str] = {
        (f["class"], finding_key(f)): f["handoff"]
        for f in findings
        if not (f["class"] == "flag" and f["ref"] in ambiguous)
        and not (f["class"] == "crm_stale" and finding_key(f) in ambiguous)
    }
    scores = {cls: Score() for cls in RECON_CLASSES}
    misses: list[str] = []
    for key, handoff in found.items():
        if key in truth:
            scores[key[0]].tp += 1
            if handoff not in truth[key]:
                scores[key[0]].wrong_handoff += 1
                misses.append(f"handoff {key}: found {handoff}, labelled {sorted(truth[key])}")
        else:
            scores[key[0]].fp += 1
            misses.append(f"false positive {key} ({handoff})")
    for key, handoffs in truth.items():
        if key not in found:
            scores[key[0]].fn += 1
            misses.append(f"missed {key} ({sorted(handoffs)})")
    return scores, misses


def no_fault_config(seed: int, customers: int = 120) -> ScenarioConfig:
    """No fault and no data noise: every system agrees (the simulator's own "clean" run still
    has households and cross-store duplicates, whose flags its truth marks wrong)."""
    cfg = config(seed, customers, faults=no_faults())
    quiet = NoiseConfig(**{name: 0.0 for name in NoiseConfig.model_fields})
    return cfg.model_copy(update={"noise": quiet})
