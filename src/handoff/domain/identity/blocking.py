"""Blocking: which pairs are worth scoring at all.

Scoring every pair is quadratic; instead each profile gets a handful of keys and only profiles
sharing a key are compared. Several independent passes (postcode + phonetic surname, phonetic
name pair, date of birth, postcode + house number, email, phone suffix, …) keep recall high when
any one field is mistyped. Every key combines at least two fields or one identifier, so blocks
stay small as the population grows; a key shared by more than `max_block_size` records is
skipped (and reported) rather than scored. The keys are plain strings, so a store can index them
(`identifier`/`blocking_key` rows) and PostgreSQL can serialise concurrent resolutions on them.

Each rule also names the comparisons its key is built from; EM training excludes those fields
when it learns from that pass's pairs, because blocking on a field makes agreement on it a
foregone conclusion there.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from handoff.domain.identity.normalize import NormalizedProfile

KeyFn = Callable[[NormalizedProfile], str | None]


@dataclass(frozen=True, slots=True)
class BlockingRule:
    name: str
    key: KeyFn
    fields: frozenset[str]  # comparisons the key depends on (excluded from EM on this pass)


def _source(p: NormalizedProfile) -> str | None:
    return p.source_value if p.source_key is not None else None


def _email(p: NormalizedProfile) -> str | None:
    return p.email_id


def _email_canonical(p: NormalizedProfile) -> str | None:
    return p.email_canonical_id


def _email_local(p: NormalizedProfile) -> str | None:
    if p.email_canonical_id is None or p.email_local is None or len(p.email_local) < 4:
        return None
    return p.email_local


def _phone(p: NormalizedProfile) -> str | None:
    return p.phone_id


def _phone_suffix(p: NormalizedProfile) -> str | None:
    if p.phone_digits is None or len(p.phone_digits) < 7:
        return None
    if "phone:placeholder" in p.flags or "phone:shared" in p.flags:
        return None
    return p.phone_digits[-7:]


def _zip_surname(p: NormalizedProfile) -> str | None:
    if p.zip is None or p.last_phonetic is None:
        return None
    return f"{p.zip}|{p.last_phonetic}"


def _name_pair(p: NormalizedProfile) -> str | None:
    """Order-free phonetic pair, so swapped first/last names share the key."""
    if p.first_phonetic is None or p.last_phonetic is None:
        return None
    a, b = sorted((p.first_phonetic, p.last_phonetic))
    return f"{a}|{b}"


def _dob(p: NormalizedProfile) -> str | None:
    """Year + the day and month in sorted order, so a swapped day/month shares the key."""
    d = p.dob
    if d is None or len(d) != 8:
        return None
    mm, dd = sorted((d[4:6], d[6:8]))
    return f"{d[:4]}{mm}{dd}"


def _zip_first(p: NormalizedProfile) -> str | None:
    if p.zip is None or p.first_phonetic is None:
        return None
    return f"{p.zip}|{p.first_phonetic}"


def _zip_number(p: NormalizedProfile) -> str | None:
    if p.zip is None or p.street_number is None or not p.address_usable:
        return None
    return f"{p.zip}|{p.street_number}"


def _street_number_name(p: NormalizedProfile) -> str | None:
    if p.street is None or p.street_number is None or not p.address_usable:
        return None
    return f"{p.street_number}|{p.street[:5]}"


def _surname_birth_month(p: NormalizedProfile) -> str | None:
    if p.last_phonetic is None or p.dob is None:
        return None
    return f"{p.last_phonetic}|{p.dob[:6]}"


def _surname_street(p: NormalizedProfile) -> str | None:
    if p.last_phonetic is None or p.street is None or not p.address_usable:
        return None
    return f"{p.last_phonetic}|{p.street[:4]}"


def _first_street(p: NormalizedProfile) -> str | None:
    if p.first_phonetic is None or p.street is None or not p.address_usable:
        return None
    return f"{p.first_phonetic}|{p.street[:4]}"


def _city_surname(p: NormalizedProfile) -> str | None:
    if p.city is None or p.last_phonetic is None:
        return None
    return f"{p.city}|{p.last_phonetic}"


def _city_first(p: NormalizedProfile) -> str | None:
    if p.city is None or p.first_phonetic is None:
        return None
    return f"{p.city}|{p.first_phonetic}"


# Identifier rules first: the deterministic tier uses them, and a pair found by several rules is
# scored once, under the first rule (in this order) that found it.
DEFAULT_RULES: tuple[BlockingRule, ...] = (
    BlockingRule("sid", _source, frozenset()),
    BlockingRule("em", _email, frozenset({"email"})),
    BlockingRule("ph", _phone, frozenset({"phone"})),
    BlockingRule("emc", _email_canonical, frozenset({"email"})),
    BlockingRule("eml", _email_local, frozenset({"email"})),
    BlockingRule("phs", _phone_suffix, frozenset({"phone"})),
    BlockingRule("zl", _zip_surname, frozenset({"zip", "last_name"})),
    BlockingRule("nm", _name_pair, frozenset({"first_name", "last_name"})),
    BlockingRule("db", _dob, frozenset({"dob"})),
    BlockingRule("zf", _zip_first, frozenset({"zip", "first_name"})),
    BlockingRule("zn", _zip_number, frozenset({"zip", "street_number"})),
    BlockingRule("sn", _street_number_name, frozenset({"street", "street_number"})),
    BlockingRule("lm", _surname_birth_month, frozenset({"last_name", "dob"})),
    BlockingRule("ls", _surname_street, frozenset({"last_name", "street"})),
    BlockingRule("fs", _first_street, frozenset({"first_name", "street"})),
    BlockingRule("cl", _city_surname, frozenset({"city", "last_name"})),
    BlockingRule("cf", _city_first, frozenset({"city", "first_name"})),
)


def blocking_keys(
    profile: NormalizedProfile, rules: Sequence[BlockingRule] = DEFAULT_RULES
) -> set[str]:
    """The blocking keys of a (screened) profile: "rule:value" strings.

    Placeholder and shared identifiers produce no key (the guards have flagged them).
    """
    keys: set[str] = set()
    for rule in rules:
        value = rule.key(profile)
        if value:
            keys.add(f"{rule.name}:{value}")
    return keys


# Secondary keys that split an oversized block of a non-identifier rule (see `BlockIndex`): each
# is (name, the comparison it comes from, key). A block is split by every secondary key whose
# field the rule does not already block on.
_REFINERS: tuple[tuple[str, str, KeyFn], ...] = (
    ("z3", "zip", lambda p: p.zip[:3] if p.zip else None),
    ("by", "dob", lambda p: p.dob[:4] if p.dob else None),
    ("l2", "last_name", lambda p: p.last_phonetic[:2] if p.last_phonetic else None),
    ("f1", "first_name", lambda p: p.first_phonetic[:1] if p.first_phonetic else None),
)
_IDENTIFIER_FIELDS = frozenset({"email", "phone"})


class BlockIndex:
    """Blocks of a whole batch in compact integer arrays (memory linear in key memberships).

    Built one rule at a time, so only one rule's value → records map exists at any moment;
    blocks of one record are dropped at once, blocks over `max_block_size` are skipped and
    reported in `skipped` as ("rule:value", size).

    With `refine_above`, a block of a non-identifier rule (names, address, birth date) larger
    than that is split by secondary keys — postcode prefix, birth year, surname and first-name
    sound prefixes, each unless the rule already blocks on that field — so only its members that
    also share one of those are paired. In a population of millions a common name pair or birth
    date forms blocks of hundreds whose pairs almost never match on anything else; true
    duplicates in such a block share a secondary key or an identifier rule finds them. Small
    batches (blocks under the limit) are unaffected. Refined blocks are counted in `refined`.
    """

    def __init__(
        self,
        profiles: Sequence[NormalizedProfile],
        rules: Sequence[BlockingRule] = DEFAULT_RULES,
        *,
        max_block_size: int,
        refine_above: int | None = None,
    ) -> None:
        self.size = n = len(profiles)
        self.skipped: list[tuple[str, int]] = []
        self.refined = 0
        blocks: list[array[int]] = []
        record_blocks: list[list[int]] = [[] for _ in range(n)]

        def emit(members: list[int]) -> None:
            b = len(blocks)
            blocks.append(array("l", members))
            for i in members:
                record_blocks[i].append(b)

        for rule in rules:
            index: dict[str, list[int]] = {}
            key = rule.key
            for i, p in enumerate(profiles):
                value = key(p)
                if value:
                    found = index.get(value)
                    if found is None:
                        index[value] = [i]
                    else:
                        found.append(i)
            refiners = [
                (name, fn)
                for name, fname, fn in _REFINERS
                if fname not in rule.fields and not (rule.fields & _IDENTIFIER_FIELDS)
            ]
            for value, members in index.items():
                size = len(members)
                if size < 2:
                    continue
                if size > max_block_size:
                    self.skipped.append((f"{rule.name}:{value}", size))
                    continue
                if refine_above is not None and size > refine_above and refiners and rule.fields:
                    self.refined += 1
                    for _name, fn in refiners:
                        parts: dict[str, list[int]] = {}
                        for i in members:
                            sub = fn(profiles[i])
                            if sub:
                                parts.setdefault(sub, []).append(i)
                        for part in parts.values():
                            if len(part) > 1:
                                emit(part)
                    continue
                emit(members)
            del index
        self._blocks = blocks
        self._record_blocks = record_blocks

    @property
    def blocks(self) -> int:
        return len(self._blocks)

    def members(self, block: int) -> array[int]:
        return self._blocks[block]

    def blocks_of(self, record: int) -> list[int]:
        return self._record_blocks[record]

    def pair_count_bound(self) -> int:
        """Pairs summed over blocks (an upper bound: a pair in two blocks counts twice)."""
        return sum(len(m) * (len(m) - 1) // 2 for m in self._blocks)

    def later_neighbours(self, i: int) -> set[int]:
        """Records j > i sharing at least one block with record i."""
        out: set[int] = set()
        blocks = self._blocks
        for b in self._record_blocks[i]:
            members = blocks[b]  # ascending
            out.update(members[bisect_right(members, i) :])
        return out

    def pairs(self) -> Iterator[tuple[int, int]]:
        """Every pair of records sharing a block, exactly once, as (i, j) with i < j.

        Record by record: the union of its blocks' later members. No global set of seen pairs,
        so memory stays linear in the records however many pairs there are.
        """
        for i in range(self.size):
            for j in sorted(self.later_neighbours(i)):
                yield i, j


def candidate_pairs(
    profiles: Sequence[NormalizedProfile],
    rules: Sequence[BlockingRule] = DEFAULT_RULES,
    *,
    max_block_size: int,
    skipped: list[tuple[str, int]] | None = None,
) -> Iterator[tuple[int, int]]:
    """Every pair of (screened) profiles sharing a usable blocking key, once, as (i, j), i < j."""
    index = BlockIndex(profiles, rules, max_block_size=max_block_size)
    if skipped is not None:
        skipped.extend(index.skipped)
    return index.pairs()
