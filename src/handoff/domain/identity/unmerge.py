"""Unmerge: split a cluster by replaying its decisions without the bad link.

A cluster is the connected graph of its profiles. Its edges are the decision log's merges (each
joins the new profile to the one it matched, `evidence.record_b`, or a reviewer's two records)
and the system ids (every profile carrying `(system, external_id)` belongs with the first that
carried it). Dropping one merge edge and taking the connected parts again gives exactly the
clusters that would exist had that merge never been made: the live engine only ever joins a new
profile to one customer, so no later decision can have depended on both sides at once except a
reviewer's merge, which is an edge of its own that the operator can undo as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class UnmergeError(ValueError):
    """The decision cannot be undone (not a merge, already undone, or still linked)."""


@dataclass(frozen=True)
class ClusterRecord:
    record_id: str
    source: tuple[str, str] | None  # (system, external id) when the profile carried one


@dataclass(frozen=True)
class Part:
    """One customer after the split: its records in arrival order and the customer ids that
    were founded by one of them (the first profile of each former customer)."""

    records: tuple[str, ...]
    founders: frozenset[int]


def _linked_record(decision: Mapping[str, Any], founded: Mapping[int, str]) -> str | None:
    evidence = decision.get("evidence") or {}
    other = evidence.get("record_b")
    if isinstance(other, str):
        return other
    for key in ("other_customer_id", "customer_id"):  # older decisions without the matched record
        cid = decision.get(key)
        if cid is not None and int(cid) in founded and founded[int(cid)] != decision["record_id"]:
            return founded[int(cid)]
    return None


def split_cluster(
    records: Sequence[ClusterRecord],
    decisions: Sequence[Mapping[str, Any]],
    undo: int,
    root: int,
) -> list[Part]:
    """The parts of cluster `root` without decision `undo`, the part that keeps `root` first.

    `decisions` are the cluster's decision-log rows (dicts with id, kind, record_id,
    customer_id, other_customer_id, evidence). A profile no decision placed (it arrived with a
    system id the cluster had learned on delivery) stays with the part that keeps the root."""
    index = {r.record_id: i for i, r in enumerate(records)}
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first_of: dict[tuple[str, str], int] = {}
    for i, r in enumerate(records):
        if r.source is not None:
            union(first_of.setdefault(r.source, i), i)

    founded: dict[int, str] = {}
    undone: set[int] = set()
    for d in decisions:
        if d["kind"] in ("new", "review") and d.get("customer_id") is not None:
            founded.setdefault(int(d["customer_id"]), d["record_id"])
        if d["kind"] == "unmerge":
            undone.add(int((d.get("evidence") or {}).get("undoes", -1)))

    target = next((d for d in decisions if int(d["id"]) == undo), None)
    if target is None or target["kind"] != "merge":
        raise UnmergeError(f"decision {undo} is not a merge of this cluster")
    if undo in undone:
        raise UnmergeError(f"decision {undo} was already undone")
    a, b = target["record_id"], _linked_record(target, founded)
    if a not in index or b is None or b not in index:
        raise UnmergeError(f"decision {undo} does not name two records of this cluster")

    for d in decisions:
        did = int(d["id"])
        if d["kind"] != "merge" or did == undo or did in undone:
            continue
        other = _linked_record(d, founded)
        if d["record_id"] in index and other in index:
            union(index[d["record_id"]], index[other])

    if find(index[a]) == find(index[b]):
        raise UnmergeError(
            f"records {a} and {b} are still joined by other decisions or a shared system id; "
            "undo those merges first"
        )
    groups: dict[int, list[str]] = {}
    for i, r in enumerate(records):
        groups.setdefault(find(i), []).append(r.record_id)
    founders_of = {rec: cid for cid, rec in founded.items()}
    sides = {find(index[a]), find(index[b])}
    parts: list[tuple[int, list[str], set[int]]] = []
    orphans: list[int] = []
    for key, recs in sorted(groups.items()):
        owners = {founders_of[x] for x in recs if x in founders_of}
        if owners or key in sides:
            parts.append((key, recs, owners))
        else:
            orphans.append(key)
    keeper = next((p for p in parts if root in p[2]), parts[0])
    for key in orphans:
        keeper[1].extend(groups[key])
    order = {r.record_id: i for i, r in enumerate(records)}
    parts.sort(key=lambda p: (p is not keeper, p[0]))
    return [
        Part(tuple(sorted(recs, key=order.__getitem__)), frozenset(own)) for _, recs, own in parts
    ]
