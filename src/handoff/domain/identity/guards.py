"""Guards: the rules that keep bad identifiers and runaway clusters from merging people.

Four kinds of guard, all configurable through `GuardConfig`:

* placeholders — values people type when they have nothing to type (`test@test.com`,
  `noemail@…`, `0000000000`, `1234567890`, "Guest"); they are never identifiers;
* frequency — a value seen on more distinct people than `max_people_per_value` (a store
  associate's email, a shop's landline, a shared building address, a POS "walk-in" customer id)
  stops being an identifier by itself; `find_shared` finds such values and reports them;
* conflicts — a shared email or phone whose owners have clearly different first names or dates of
  birth (a household) goes to review, never to an automatic merge; a phone seen too far apart in
  time (numbers are recycled) never merges alone;
* cluster guards — `max_cluster_size` and the exclusive-system contradiction (two different ids of
  a system that holds one account per person) stop transitive over-merging.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, replace
from datetime import timedelta

from rapidfuzz.distance import OSA, JaroWinkler

from handoff.domain.identity.nicknames import are_nicknames
from handoff.domain.identity.normalize import (
    DEFAULT_NORMALIZE,
    NormalizeConfig,
    NormalizedProfile,
    Profile,
    normalize,
)

PLACEHOLDER_EMAILS = frozenset(
    {
        "test@test.com",
        "none@none.com",
        "na@na.com",
        "no@no.com",
        "no@email.com",
        "email@email.com",
        "noemail@noemail.com",
        "abc@abc.com",
        "a@a.com",
        "x@x.com",
        "customer@customer.com",
        "unknown@unknown.com",
        "nobody@nowhere.com",
        "asdf@asdf.com",
    }
)
PLACEHOLDER_EMAIL_LOCALS = frozenset(
    {
        "noemail",
        "no.email",
        "no-email",
        "no_email",
        "nomail",
        "no.mail",
        "none",
        "na",
        "n.a",
        "noreply",
        "no-reply",
        "donotreply",
        "do-not-reply",
        "do.not.reply",
        "unknown",
        "declined",
        "refused",
        "noaddress",
        "nobody",
        "null",
        "test",
        "testing",
        "asdf",
        "customer",
        "guest",
        "fake",
    }
)
PLACEHOLDER_EMAIL_DOMAINS = frozenset(
    {
        "test.com",
        "example.com",
        "example.org",
        "example.net",
        "none.com",
        "noemail.com",
        "nomail.com",
        "no-email.com",
        "noreply.com",
        "fake.com",
        "email.invalid",
    }
)
PLACEHOLDER_PHONES = frozenset(
    {
        "0000000000",
        "1234567890",
        "0123456789",
        "9876543210",
        "1231231234",
        "5555555555",
        "9999999999",
        "1111111111",
    }
)
PLACEHOLDER_NAMES = frozenset(
    {
        "test",
        "testing",
        "unknown",
        "none",
        "na",
        "nil",
        "null",
        "guest",
        "customer",
        "cashcustomer",
        "walkin",
        "walkincustomer",
        "valuedcustomer",
        "anonymous",
        "noname",
        "noemail",
        "x",
        "xx",
        "xxx",
        "asdf",
    }
)
PLACEHOLDER_DOBS = frozenset(
    {"00000000", "11111111", "99999999", "19000101", "19010101", "18991231", "19111111"}
)

_ASCENDING = "01234567890123456789"
_DESCENDING = "98765432109876543210"


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Every guard threshold and list in one place (configurable; defaults are the documented ones).

    `exclusive_systems` names systems that hold at most one account per person (e.g. a loyalty
    platform that enforces unique members): a cluster may never contain two different
    external ids of such a system. Systems not listed may hold duplicates (that is what dedupe
    is for). `strict_conflicts` sends a shared email/phone to review on a first-name *or* a
    birth-date difference alone (see `person_conflict`). `household_guard` applies the same
    person-conflict veto to probabilistic merges that share no identifier (off by default; see
    docs/identity.md for what it costs on FEBRL). `max_block_size` caps a blocking key's
    candidate list so one common key cannot turn the batch quadratic; skipped keys are reported.
    `refine_block_size`: in a batch, a name, address or birth-date block larger than this is
    split by secondary keys (postcode prefix, birth year, name sound prefixes; see
    `blocking.BlockIndex`) so a million profiles do not pair every "John Smith" with every other.
    """

    placeholder_emails: frozenset[str] = PLACEHOLDER_EMAILS
    placeholder_email_locals: frozenset[str] = PLACEHOLDER_EMAIL_LOCALS
    placeholder_email_domains: frozenset[str] = PLACEHOLDER_EMAIL_DOMAINS
    placeholder_phones: frozenset[str] = PLACEHOLDER_PHONES
    placeholder_names: frozenset[str] = PLACEHOLDER_NAMES
    placeholder_dobs: frozenset[str] = PLACEHOLDER_DOBS
    max_people_per_value: int = 6
    max_cluster_size: int = 50
    phone_max_age: timedelta = timedelta(days=730)
    exclusive_systems: frozenset[str] = frozenset()
    max_block_size: int = 500
    refine_block_size: int | None = 50
    strict_conflicts: bool = False
    household_guard: bool = False


DEFAULT_GUARDS = GuardConfig()


# --------------------------------------------------------------------------------------------
# placeholders


def is_placeholder_email(email: str, config: GuardConfig = DEFAULT_GUARDS) -> bool:
    """A normalised email standing for "no email": listed, listed local part or domain, aaa@…"""
    if email in config.placeholder_emails:
        return True
    local, _, domain = email.rpartition("@")
    if local in config.placeholder_email_locals or domain in config.placeholder_email_domains:
        return True
    base = local.split("+", 1)[0]
    if base in config.placeholder_email_locals:
        return True
    return len(set(base)) == 1  # "x@…", "aaaa@…"


def is_placeholder_phone(digits: str, config: GuardConfig = DEFAULT_GUARDS) -> bool:
    """Digits that stand for "no phone": listed, one repeated digit, or a straight run of seven."""
    if digits in config.placeholder_phones:
        return True
    if any(digits.endswith(p) for p in config.placeholder_phones if len(p) >= 7):
        return True
    tail = digits[-7:]
    if len(tail) < 7:
        return len(set(digits)) == 1
    return len(set(tail)) == 1 or tail in _ASCENDING or tail in _DESCENDING


def screen(
    profile: NormalizedProfile,
    config: GuardConfig = DEFAULT_GUARDS,
    shared: Set[tuple[str, str]] = frozenset(),
) -> NormalizedProfile:
    """Apply placeholder and shared-value guards to a normalised profile.

    Placeholder names and dates of birth are removed (they carry no information); placeholder and
    shared emails/phones/addresses stay visible but are flagged, so they are never used as
    identifiers, blocking keys or evidence, and the flag explains why.
    """
    flags: set[str] = set()
    changes: dict[str, object] = {}
    if profile.email is not None:
        if is_placeholder_email(profile.email, config):
            flags.add("email:placeholder")
        elif ("email", profile.email) in shared:
            flags.add("email:shared")
        if profile.email_canonical and ("email_canonical", profile.email_canonical) in shared:
            flags.add("email_canonical:shared")
    if profile.phone_digits is not None:
        if is_placeholder_phone(profile.phone_digits, config):
            flags.add("phone:placeholder")
        elif profile.phone is not None and ("phone", profile.phone) in shared:
            flags.add("phone:shared")
    if profile.first_name is not None and profile.first_name in config.placeholder_names:
        flags.add("first_name:placeholder")
        changes.update(first_name=None, first_token=None, first_phonetic=None)
    if profile.last_name is not None and profile.last_name in config.placeholder_names:
        flags.add("last_name:placeholder")
        changes.update(last_name=None, last_phonetic=None)
    if profile.dob is not None and profile.dob in config.placeholder_dobs:
        flags.add("dob:placeholder")
        changes["dob"] = None
    source = profile.source_value
    if source is not None and ("source", source) in shared:
        flags.add("source:shared")
    key = profile.address_key
    if key is not None and ("address", key) in shared:
        flags.add("address:shared")
    if not flags:
        return profile
    return replace(profile, flags=profile.flags | flags, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# conflicts (a household is not a person)


def nicknames_match(a: NormalizedProfile, b: NormalizedProfile) -> bool:
    """First names (whole, or first words) equal or nickname-equivalent (Bob/Robert)."""
    fa, fb = a.first_name, b.first_name
    if fa is None or fb is None:
        return False
    if are_nicknames(fa, fb):
        return True
    ta, tb = a.first_token, b.first_token
    return ta is not None and tb is not None and (ta != fa or tb != fb) and are_nicknames(ta, tb)


def names_similar(a: str, b: str) -> bool:
    return a == b or JaroWinkler.similarity(a, b) >= 0.8


def first_name_conflict(a: NormalizedProfile, b: NormalizedProfile) -> bool:
    """Both first names known and clearly different: not equal, not a nickname, not a typo, not
    an initial, and not explained by first and last name having been swapped."""
    fa, fb = a.first_name, b.first_name
    if fa is None or fb is None or fa == fb:
        return False
    if nicknames_match(a, b):
        return False
    if JaroWinkler.similarity(fa, fb) >= 0.8 or _one_typo(fa, fb):
        return False
    if (len(fa) == 1 and fb.startswith(fa)) or (len(fb) == 1 and fa.startswith(fb)):
        return False
    # a first name found as the other profile's last name (or the reverse): fields swapped
    la, lb = a.last_name, b.last_name
    return not (
        (lb is not None and names_similar(fa, lb)) or (la is not None and names_similar(la, fb))
    )


def _one_typo(a: str, b: str) -> bool:
    """One edit apart: for names of four letters or more any edit, for shorter ones only a
    swap of two letters (Eva/Ava, Jon/Jan are different people often enough)."""
    if OSA.distance(a, b) != 1:
        return False
    return min(len(a), len(b)) >= 4 or sorted(a) == sorted(b)


def dob_typo(a: str, b: str) -> bool:
    """Same date up to one typed mistake or a swapped day and month."""
    if a == b or OSA.distance(a, b) <= 1:
        return True
    return len(a) == 8 and len(b) == 8 and a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]


def dob_conflict(a: NormalizedProfile, b: NormalizedProfile) -> bool:
    """Both dates of birth known and not the same date up to a typo."""
    if a.dob is None or b.dob is None:
        return False
    return not dob_typo(a.dob, b.dob)


def first_names_agree(a: NormalizedProfile, b: NormalizedProfile) -> bool:
    """Both first names known and the same up to a typo, a nickname or an initial."""
    fa, fb = a.first_name, b.first_name
    if fa is None or fb is None:
        return False
    return not first_name_conflict(a, b)


def dobs_agree(a: NormalizedProfile, b: NormalizedProfile) -> bool:
    """Both dates of birth known and the same up to a typo or a day/month swap."""
    return a.dob is not None and b.dob is not None and dob_typo(a.dob, b.dob)


def person_conflict(
    a: NormalizedProfile, b: NormalizedProfile, *, strict: bool = False
) -> str | None:
    """Why two profiles sharing an identifier look like two people (or None).

    Different generational suffixes (Jr./Sr.) always conflict. Otherwise, by default a clearly
    different first name is a conflict unless the dates of birth agree, and a clearly different
    date of birth is a conflict unless the first names agree: a household (spouses, parent and
    child) differs in first name and in birth date, or in one with the other unknown, while one
    person's records with one mistyped or replaced field still agree on the other. `strict`
    makes either difference a conflict on its own (twins and a mistyped birth date then go to
    review as well). See docs/identity.md for the trade-off measured on FEBRL.
    """
    if a.suffix is not None and b.suffix is not None and a.suffix != b.suffix:
        return "generation_suffix"
    first = first_name_conflict(a, b)
    dob = dob_conflict(a, b)
    if strict:
        return "first_name" if first else ("date_of_birth" if dob else None)
    if first and not dobs_agree(a, b):
        return "first_name"
    if dob and not first_names_agree(a, b):
        return "date_of_birth"
    return None


def phone_is_current(a: NormalizedProfile, b: NormalizedProfile, config: GuardConfig) -> bool:
    """False when the two sightings of a phone are further apart than `phone_max_age`.

    Numbers are recycled by carriers; a phone seen years apart is weak evidence on its own. When
    either sighting has no time the phone is taken as current (nothing says otherwise).
    """
    if a.seen_at is None or b.seen_at is None:
        return True
    return abs(a.seen_at - b.seen_at) <= config.phone_max_age


def exclusive_conflict(
    keys_a: Iterable[tuple[str, str]],
    keys_b: Iterable[tuple[str, str]],
    config: GuardConfig,
) -> tuple[str, str, str] | None:
    """(system, id_a, id_b) when two groups hold different ids of one exclusive system."""
    if not config.exclusive_systems:
        return None
    seen: dict[str, str] = {}
    for system, ext in keys_a:
        if system in config.exclusive_systems:
            seen.setdefault(system, ext)
    for system, ext in keys_b:
        other = seen.get(system)
        if other is not None and other != ext:
            return (system, other, ext)
    return None


# --------------------------------------------------------------------------------------------
# the frequency rule


@dataclass(frozen=True, slots=True)
class SharedValue:
    """An identifier value used by more distinct people than the configured limit."""

    kind: str  # "source" (system + external id), "email", "email_canonical", "phone", "address"
    value: str
    people: int  # distinct people seen (a lower bound once past the limit: counting stops)
    records: int


_Person = tuple[str | None, str | None, str | None, str | None]  # first, last, dob, first token


def _same_person(a: _Person, b: _Person) -> bool:
    """Loose person equality for counting: typos and nicknames are the same person."""
    fa, la, da, ta = a
    fb, lb, db, tb = b
    if da is not None and db is not None and not dob_typo(da, db):
        return False
    first_ok = (
        fa is None
        or fb is None
        or names_similar(fa, fb)
        or are_nicknames(fa, fb)
        or (ta is not None and tb is not None and are_nicknames(ta, tb))
    )
    last_ok = la is None or lb is None or names_similar(la, lb)
    if first_ok and last_ok:
        return True
    # swapped first and last name
    return (
        fa is not None
        and lb is not None
        and la is not None
        and fb is not None
        and names_similar(fa, lb)
        and names_similar(la, fb)
    )


def identifier_values(
    profile: NormalizedProfile, config: GuardConfig = DEFAULT_GUARDS
) -> list[tuple[str, str]]:
    """The (kind, value) identifiers a profile contributes to the frequency rule.

    Kinds: "source" (system + external id), "email", "email_canonical", "phone", "address".
    The live pipeline can keep a count of distinct customers per such value and flag those over
    the limit as shared when it screens a new profile.
    """
    out: list[tuple[str, str]] = []
    source = profile.source_value
    if source is not None:
        out.append(("source", source))
    if profile.email is not None and not is_placeholder_email(profile.email, config):
        out.append(("email", profile.email))
        if profile.email_canonical is not None:
            out.append(("email_canonical", profile.email_canonical))
    if profile.phone is not None and not (
        profile.phone_digits and is_placeholder_phone(profile.phone_digits, config)
    ):
        out.append(("phone", profile.phone))
    key = profile.address_key
    if key is not None:
        out.append(("address", key))
    return out


def _person(profile: NormalizedProfile) -> _Person | None:
    if profile.first_name is None and profile.last_name is None and profile.dob is None:
        return None  # nothing to tell people apart by
    return (profile.first_name, profile.last_name, profile.dob, profile.first_token)


def count_people(persons: Iterable[_Person], limit: int) -> int:
    """Distinct people among name/birth-date signatures, tolerant to typos, nicknames and swapped
    names; counting stops at limit + 1."""
    found: list[_Person] = []
    for person in persons:
        if any(_same_person(person, known) for known in found):
            continue
        found.append(person)
        if len(found) > limit:
            break
    return len(found)


def find_shared(
    profiles: Sequence[NormalizedProfile], config: GuardConfig = DEFAULT_GUARDS
) -> list[SharedValue]:
    """Identifier values used by more than `max_people_per_value` distinct people.

    "Distinct people" is estimated from names and dates of birth (`count_people`), so one
    person's five profiles count once and twenty shoppers typed under a store associate's email
    count twenty times. Two passes per kind keep memory low: first count records per value, then
    count people only for values with more records than the limit (no other value can be shared).
    """
    limit = config.max_people_per_value
    found: list[SharedValue] = []
    values_of = [identifier_values(p, config) for p in profiles]
    for kind in ("source", "email", "email_canonical", "phone", "address"):
        records: dict[str, int] = {}
        for values in values_of:
            for k, value in values:
                if k == kind:
                    records[value] = records.get(value, 0) + 1
        busy = {value for value, n in records.items() if n > limit}
        del records
        if not busy:
            continue
        persons: dict[str, list[_Person]] = {value: [] for value in busy}
        counts: dict[str, int] = dict.fromkeys(busy, 0)
        for p, values in zip(profiles, values_of, strict=True):
            for k, value in values:
                if k == kind and value in busy:
                    counts[value] += 1
                    person = _person(p)
                    if person is not None:
                        persons[value].append(person)
        for value in sorted(busy):
            people = count_people(persons[value], limit)
            if people > limit:
                found.append(SharedValue(kind, value, people, counts[value]))
    found.sort(key=lambda v: (-v.people, -v.records, v.kind, v.value))
    return found


def prepare(
    profiles: Iterable[Profile],
    config: GuardConfig = DEFAULT_GUARDS,
    normalize_config: NormalizeConfig = DEFAULT_NORMALIZE,
) -> tuple[list[NormalizedProfile], list[SharedValue]]:
    """Normalise a batch, count distinct people per identifier, and screen every profile.

    Two passes over the normalised profiles: the census must see the whole batch before any
    value can be called shared.
    """
    normalized = [normalize(p, normalize_config) for p in profiles]
    shared = find_shared(normalized, config)
    keys = frozenset((s.kind, s.value) for s in shared)
    return [screen(p, config, keys) for p in normalized], shared
