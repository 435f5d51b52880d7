"""Per-field comparison levels: how alike two normalised profiles are, field by field.

Each comparison maps a pair of profiles to a level index: 0 is the strongest agreement, the last
level is "disagree", and `NULL` (-1) means a value is missing on either side (no evidence either
way). The Fellegi-Sunter model (`model.py`) gives each level an m and a u probability; the levels
themselves are fixed here and named, so a trained model can be checked against them.

Typists swap first and last names and the two address lines; the name and address comparisons
try the crossed pairing when the straight one disagrees. Similarities are rapidfuzz Jaro-Winkler
(strings) and optimal-string-alignment distance (dates, postcodes, digits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rapidfuzz.distance import OSA, JaroWinkler

from handoff.domain.identity.guards import (
    DEFAULT_GUARDS,
    GuardConfig,
    nicknames_match,
    phone_is_current,
)
from handoff.domain.identity.normalize import NormalizedProfile

NULL = -1

_jw = JaroWinkler.similarity
_osa = OSA.distance

Compare = Callable[[NormalizedProfile, NormalizedProfile], int]
Value = Callable[[NormalizedProfile], str | None]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One field's comparison: level names (strongest first), the level function, and which value
    drives the term-frequency adjustment of the top level (None: no adjustment)."""

    name: str
    levels: tuple[str, ...]
    compare: Compare
    value: Value
    tf: bool = False


def _str_level(a: str, b: str, high: float, low: float | None) -> int:
    """0 exact, 1 JW ≥ high, 2 JW ≥ low (if given), last: else."""
    if a == b:
        return 0
    sim = _jw(a, b)
    if sim >= high:
        return 1
    if low is None:
        return 2
    return 2 if sim >= low else 3


# --------------------------------------------------------------------------------------------
# names

FIRST_LEVELS = ("exact", "nickname", "jw_0.92", "jw_0.80_or_initial", "else")
LAST_LEVELS = ("exact", "jw_0.92", "jw_0.80", "else")


def _first_straight(a: NormalizedProfile, b: NormalizedProfile, fa: str, fb: str) -> int:
    if fa == fb:
        return 0
    if nicknames_match(a, b):
        return 1
    sim = _jw(fa, fb)
    if sim >= 0.92:
        return 2
    if sim >= 0.80 or (len(fa) == 1 and fb.startswith(fa)) or (len(fb) == 1 and fa.startswith(fb)):
        return 3
    return 4


def _crossed(a: NormalizedProfile, b: NormalizedProfile) -> tuple[int, int] | None:
    """Levels (first, last) when first and last names look swapped between the two profiles."""
    fa, la, fb, lb = a.first_name, a.last_name, b.first_name, b.last_name
    if fa is None or la is None or fb is None or lb is None:
        return None
    cf = _str_level(fa, lb, 0.92, 0.80)
    if cf > 1:
        return None
    cl = _str_level(la, fb, 0.92, 0.80)
    if cl > 1:
        return None
    # map the LAST_LEVELS-style index of the crossed first name onto FIRST_LEVELS
    return (0 if cf == 0 else 2, cl)


def compare_first_name(a: NormalizedProfile, b: NormalizedProfile) -> int:
    fa, fb = a.first_name, b.first_name
    if fa is None or fb is None:
        return NULL
    level = _first_straight(a, b, fa, fb)
    if level >= 3:
        crossed = _crossed(a, b)
        if crossed is not None:
            return crossed[0]
    return level


def compare_last_name(a: NormalizedProfile, b: NormalizedProfile) -> int:
    la, lb = a.last_name, b.last_name
    if la is None or lb is None:
        return NULL
    level = _str_level(la, lb, 0.92, 0.80)
    if level >= 2:
        crossed = _crossed(a, b)
        if crossed is not None:
            return crossed[1]
    return level


# --------------------------------------------------------------------------------------------
# date of birth, postcode, address

DOB_LEVELS = ("exact", "typo_or_day_month_swap", "two_edits", "else")


def compare_dob(a: NormalizedProfile, b: NormalizedProfile) -> int:
    da, db = a.dob, b.dob
    if da is None or db is None:
        return NULL
    if da == db:
        return 0
    dist = _osa(da, db)
    if dist <= 1:
        return 1
    if (
        len(da) == 8
        and len(db) == 8
        and da[:4] == db[:4]
        and da[4:6] == db[6:8]
        and da[6:8] == db[4:6]
    ):
        return 1
    return 2 if dist == 2 else 3


ZIP_LEVELS = ("exact", "one_edit", "else")


def compare_zip(a: NormalizedProfile, b: NormalizedProfile) -> int:
    za, zb = a.zip, b.zip
    if za is None or zb is None:
        return NULL
    if za == zb:
        return 0
    return 1 if _osa(za, zb) <= 1 else 2


NUMBER_LEVELS = ("exact", "else")


def compare_street_number(a: NormalizedProfile, b: NormalizedProfile) -> int:
    if not (a.address_usable and b.address_usable):
        return NULL
    na, nb = a.street_number, b.street_number
    if na is None or nb is None:
        return NULL
    return 0 if na == nb else 1


STREET_LEVELS = ("exact", "jw_0.92", "jw_0.80", "else")


def compare_street(a: NormalizedProfile, b: NormalizedProfile) -> int:
    if not (a.address_usable and b.address_usable):
        return NULL
    sa, sb = a.street, b.street
    if sa is None or sb is None:
        return NULL
    level = _str_level(sa, sb, 0.92, 0.80)
    if level >= 2:
        # the two address lines swapped: street on one side is line 2 on the other
        xa, xb = a.address2, b.address2
        if xa is not None and xb is not None:
            cross = max(_str_level(sa, xb, 0.92, 0.80), _str_level(xa, sb, 0.92, 0.80))
            if cross <= 1:
                return cross
        elif xb is not None:
            cross = _str_level(sa, xb, 0.92, 0.80)
            if cross <= 1:
                return cross
        elif xa is not None:
            cross = _str_level(xa, sb, 0.92, 0.80)
            if cross <= 1:
                return cross
    return level


LINE2_LEVELS = ("exact", "jw_0.90", "else")


def compare_address2(a: NormalizedProfile, b: NormalizedProfile) -> int:
    if not (a.address_usable and b.address_usable):
        return NULL
    xa, xb = a.address2, b.address2
    if xa is None or xb is None:
        return NULL
    level = _str_level(xa, xb, 0.90, None)
    if level == 2:
        sa, sb = a.street, b.street
        if sa is not None and sb is not None:
            cross = max(_str_level(xa, sb, 0.90, None), _str_level(sa, xb, 0.90, None))
            if cross <= 1:
                return cross
    return level


CITY_LEVELS = ("exact", "jw_0.90", "else")


def compare_city(a: NormalizedProfile, b: NormalizedProfile) -> int:
    ca, cb = a.city, b.city
    if ca is None or cb is None:
        return NULL
    return _str_level(ca, cb, 0.90, None)


STATE_LEVELS = ("exact", "else")


def compare_state(a: NormalizedProfile, b: NormalizedProfile) -> int:
    sa, sb = a.state, b.state
    if sa is None or sb is None:
        return NULL
    return 0 if sa == sb else 1


# --------------------------------------------------------------------------------------------
# email and phone

EMAIL_LEVELS = ("exact", "provider_canonical", "local_part_similar", "else")


def compare_email(a: NormalizedProfile, b: NormalizedProfile) -> int:
    ea, eb = a.email_id, b.email_id
    if ea is None or eb is None:
        return NULL
    if ea == eb:
        return 0
    ca, cb = a.email_canonical_id, b.email_canonical_id
    if ca is not None and ca == cb:
        return 1
    la, lb = a.email_local, b.email_local
    if la is not None and lb is not None and (la == lb or _jw(la, lb) >= 0.92):
        return 2
    return 3


PHONE_LEVELS = ("exact", "stale_or_same_last_8", "one_edit", "else")


def _phone_digits(p: NormalizedProfile) -> str | None:
    if "phone:placeholder" in p.flags or "phone:shared" in p.flags:
        return None
    return p.phone_digits


def make_compare_phone(config: GuardConfig) -> Compare:
    """Phone comparison bound to the guard's time scope (a stale exact match is only partial)."""

    def compare_phone(a: NormalizedProfile, b: NormalizedProfile) -> int:
        da, db = _phone_digits(a), _phone_digits(b)
        if da is None or db is None:
            return NULL
        if a.phone is not None and a.phone == b.phone:
            return 0 if phone_is_current(a, b, config) else 1
        ta, tb = da[-9:], db[-9:]
        if len(ta) >= 8 and len(tb) >= 8 and ta[-8:] == tb[-8:]:
            return 1
        if len(ta) >= 7 and len(tb) >= 7 and _osa(ta, tb) <= 1:
            return 2
        return 3

    return compare_phone


# --------------------------------------------------------------------------------------------
# the set


def _address2_value(p: NormalizedProfile) -> str | None:
    return p.address2


def build_comparisons(config: GuardConfig = DEFAULT_GUARDS) -> tuple[Comparison, ...]:
    """The comparisons the engine scores with, in model order."""
    return (
        Comparison("first_name", FIRST_LEVELS, compare_first_name, lambda p: p.first_name, True),
        Comparison("last_name", LAST_LEVELS, compare_last_name, lambda p: p.last_name, True),
        Comparison("dob", DOB_LEVELS, compare_dob, lambda p: p.dob, True),
        Comparison("zip", ZIP_LEVELS, compare_zip, lambda p: p.zip, True),
        Comparison(
            "street_number", NUMBER_LEVELS, compare_street_number, lambda p: p.street_number
        ),
        Comparison("street", STREET_LEVELS, compare_street, lambda p: p.street, True),
        Comparison("address2", LINE2_LEVELS, compare_address2, _address2_value, True),
        Comparison("city", CITY_LEVELS, compare_city, lambda p: p.city, True),
        Comparison("state", STATE_LEVELS, compare_state, lambda p: p.state),
        Comparison("email", EMAIL_LEVELS, compare_email, lambda p: p.email_id, True),
        Comparison("phone", PHONE_LEVELS, make_compare_phone(config), lambda p: p.phone, True),
    )


COMPARISON_NAMES = tuple(c.name for c in build_comparisons())
