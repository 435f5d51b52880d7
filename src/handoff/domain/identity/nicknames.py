"""Nickname equivalence for given names (Bob/Robert, Liz/Elizabeth, …).

The table is `nicknames.csv` next to this module, a copy of the `names.csv` file of
https://github.com/carltonnorthern/nicknames (commit af6b3a8b, Apache License 2.0; see the header
of the data file and docs/identity.md). It is loaded once, lazily, through importlib.resources so
the package stays free of I/O at import time.

The table lists pairs in both directions and some surprising ones, so it is read as an undirected
graph and used conservatively: two names are equivalent when they are equal, directly linked, or
both linked to a *longer* name (two diminutives of one formal name: Liz and Beth via Elizabeth,
Bob and Rob via Robert). Going through a short name is not allowed, or "Bill" would make Robert
and William one name. `EXCLUDED_PAIRS` drops links that join names usually borne by different
people (mostly different genders), because an equivalence also excuses a first-name conflict
between two profiles sharing an email.
"""

from __future__ import annotations

import csv
import io
from functools import cache, lru_cache
from importlib import resources

_DATA_FILE = "nicknames.csv"

EXCLUDED_PAIRS = frozenset(
    frozenset(pair)
    for pair in (
        ("aaron", "erin"),
        ("andrea", "andrew"),
        ("jacqueline", "jack"),
        ("wilma", "william"),
        ("patrick", "peter"),
        ("susan", "hannah"),
        ("roger", "bobby"),
    )
)


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Undirected adjacency of the nickname table, without the excluded pairs."""
    text = resources.files(__package__).joinpath(_DATA_FILE).read_text(encoding="utf-8")
    rows = csv.reader(line for line in io.StringIO(text) if not line.startswith("#"))
    links: dict[str, set[str]] = {}
    for row in rows:
        if len(row) != 3 or row[1] != "has_nickname":
            continue  # the header line, or a relation this module does not use
        a, b = row[0].strip().lower(), row[2].strip().lower()
        if not a or not b or a == b or frozenset((a, b)) in EXCLUDED_PAIRS:
            continue
        links.setdefault(a, set()).add(b)
        links.setdefault(b, set()).add(a)
    return {name: frozenset(others) for name, others in links.items()}


@lru_cache(maxsize=65536)
def are_nicknames(a: str, b: str) -> bool:
    """True when two folded given names are equal or nickname-equivalent."""
    if a == b:
        return True
    graph = _graph()
    na, nb = graph.get(a), graph.get(b)
    if na is None or nb is None:
        return False
    if b in na:
        return True
    longest = max(len(a), len(b))
    return any(len(c) > longest for c in na & nb)


def table_size() -> int:
    """Number of distinct names the table knows (for docs and sanity tests)."""
    return len(_graph())
