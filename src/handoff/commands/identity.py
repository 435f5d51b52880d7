"""`handoff identity …`: the review queue and the golden customers."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from handoff.commands.common import (
    ConfigOpt,
    JsonOpt,
    console,
    dump,
    ensure_schema,
    fail,
    hub,
    table,
    when,
)

identity_app = typer.Typer(help="Identity resolution: golden customers and the review queue.")
review_app = typer.Typer(help="Pairs the engine would not decide alone.", no_args_is_help=True)
identity_app.add_typer(review_app, name="review")


@review_app.command("list")
def review_list(
    config: ConfigOpt = None,
    status: Annotated[str, typer.Option(help="open, merged or split.")] = "open",
    limit: int = 50,
    as_json: JsonOpt = False,
) -> None:
    """Review items, oldest first."""
    from handoff.store import identity as store

    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        rows = store.list_review(conn, status, limit)
    if as_json:
        dump([dataclasses.asdict(r) for r in rows])
        return
    console.print(
        table(
            f"identity review ({status})",
            ["id", "since", "customer", "candidate", "score", "rule", "reason"],
            [
                (
                    r.id,
                    when(r.created_at),
                    r.customer_id,
                    r.candidate_customer_id,
                    f"{r.score:.3f}" if r.score is not None else None,
                    r.rule,
                    r.reason,
                )
                for r in rows
            ],
        )
    )


@review_app.command("show")
def review_show(review_id: int, config: ConfigOpt = None) -> None:
    """One item with both customers and the per-field evidence."""
    from handoff.store import identity as store

    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        item = store.get_review(conn, review_id)
        if item is None:
            raise fail(f"no review item {review_id}")
        a = store.contact(conn, item.customer_id)
        b = store.contact(conn, item.candidate_customer_id)
    dump(
        {
            "review": dataclasses.asdict(item),
            "customer": dataclasses.asdict(a) if a else None,
            "candidate": dataclasses.asdict(b) if b else None,
        }
    )


def _decide(review_id: int, action: str, by: str, config: ConfigOpt) -> None:
    from handoff.identity_review import ReviewError, decide_review

    h = hub(config)
    ensure_schema(h)
    try:
        outcome = decide_review(h, review_id, action, by)
    except ReviewError as exc:
        raise fail(str(exc)) from None
    if outcome.action == "merged" and outcome.absorbed is not None:
        console.print(
            f"merged customer {outcome.absorbed} into {outcome.survivor}; "
            f"{outcome.changes} change(s) queued for delivery"
        )
    else:
        console.print(f"review {review_id}: {outcome.action}")


@review_app.command("merge")
def review_merge(
    review_id: int,
    by: Annotated[str, typer.Option(help="Who decides (kept in the decision log).")] = "cli",
    config: ConfigOpt = None,
) -> None:
    """The two are one person: merge them (ledger and destinations follow)."""
    _decide(review_id, "merge", by, config)


@review_app.command("split")
def review_split(
    review_id: int,
    by: Annotated[str, typer.Option(help="Who decides (kept in the decision log).")] = "cli",
    config: ConfigOpt = None,
) -> None:
    """The two are different people: keep them apart."""
    _decide(review_id, "split", by, config)


@identity_app.command("show")
def identity_show(query: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Golden customers found by id, a system's id, email, phone or last name."""
    from handoff.store import identity as store

    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        found = store.find_customers(conn, query)
        decisions = {c.customer_id: store.decisions_of(conn, c.customer_id) for c in found}
    if as_json:
        dump([dataclasses.asdict(c) | {"decisions": decisions[c.customer_id]} for c in found])
        return
    if not found:
        raise fail(f"no customer matches {query!r}", code=1)
    for c in found:
        console.print(
            table(
                f"customer {c.customer_id}",
                ["field", "value"],
                [
                    ("email", c.email),
                    ("phone", c.phone),
                    ("name", " ".join(x for x in (c.first_name, c.last_name) if x)),
                    ("zip", c.zip),
                    *[(f"id in {s}", e) for s, e in sorted(c.external_ids.items())],
                    *[
                        (f"decision {d['id']}", f"{d['kind']} · {d['rule']} · {d['actor']}")
                        for d in decisions[c.customer_id]
                    ],
                ],
            )
        )


@identity_app.command("history")
def identity_history(customer_id: int, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every decision about a customer's cluster, oldest first: the ids `unmerge` takes."""
    from handoff.store import identity as store

    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        root = store.survivor_of(conn, customer_id)
        members = store.cluster_members(conn, root)
        records = [p.record_id for p in store.cluster_profiles(conn, root)]
        rows = store.cluster_decisions(conn, members, records)
    if as_json:
        dump(rows)
        return
    if not rows:
        raise fail(f"no decisions about customer {customer_id}", code=1)
    console.print(
        table(
            f"customer {root} ({len(members)} customer id(s), {len(records)} profile(s))",
            ["id", "when", "kind", "rule", "score", "record", "customer", "other", "actor"],
            [
                (
                    d["id"],
                    when(d["at"]),
                    d["kind"],
                    d["rule"],
                    "" if d["score"] is None else f"{d['score']:.3f}",
                    d["record_id"] or "",
                    d["customer_id"] or "",
                    d["other_customer_id"] or "",
                    d["actor"],
                )
                for d in rows
            ],
        )
    )


@identity_app.command("unmerge")
def identity_unmerge(
    decision_id: int,
    yes: Annotated[bool, typer.Option("--yes", help="Apply; without it, a dry run.")] = False,
    by: Annotated[str, typer.Option(help="Who decides (kept in the decision log).")] = "cli",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Undo a merge: split its cluster by replaying the decisions without it (ids, events,
    ledger balances and destinations follow). A dry run unless --yes."""
    from handoff.identity_review import ReviewError, unmerge

    h = hub(config)
    ensure_schema(h)
    try:
        result = unmerge(h, decision_id, actor=by, dry_run=not yes)
    except ReviewError as exc:
        raise fail(str(exc)) from None
    if as_json:
        dump(dataclasses.asdict(result))
        return
    title = f"unmerge of decision {decision_id} in customer {result.cluster}"
    console.print(
        table(
            title + ("" if result.applied else " (dry run: nothing written; --yes to apply)"),
            ["customer", "profiles", "first records"],
            [
                (
                    p.customer_id if p.customer_id is not None else "(new)",
                    len(p.records),
                    ", ".join(p.records[:3]) + (" …" if len(p.records) > 3 else ""),
                )
                for p in result.parts
            ],
        )
    )
    if result.applied:
        console.print(f"{result.changes} change(s) queued for delivery")


def register(app: typer.Typer) -> None:
    app.add_typer(identity_app, name="identity")
