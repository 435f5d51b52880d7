"""Normalisation: turn values as people typed them into values that can be compared.

Everything here is pure and deterministic. Nothing is guessed: a national phone number without a
known region stays as typed (digits only, never an identifier), an unparseable date of birth is
dropped rather than reinterpreted, an invalid email is kept out of the identifier fields.
Placeholder and shared values are *not* judged here; that is the guards' job (`guards.py`), which
needs configuration and the whole population.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import lru_cache

import jellyfish
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from handoff.domain.events import CustomerRef, ProfileBody


@dataclass(frozen=True, slots=True)
class Profile:
    """One customer profile as a source system holds it (raw values, any format).

    `record_id` identifies the row being resolved (a profile capture, an export line); `system` and
    `external_id` identify the customer inside its source system. `region` overrides the source's
    default phone region (ISO 3166 alpha-2) when the caller knows better.
    """

    record_id: str
    system: str | None = None
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: str | date | None = None
    zip: str | None = None
    address: str | None = None
    address2: str | None = None
    city: str | None = None
    state: str | None = None
    region: str | None = None
    seen_at: datetime | None = None

    @classmethod
    def from_event(
        cls,
        record_id: str,
        ref: CustomerRef,
        body: ProfileBody | None = None,
        *,
        seen_at: datetime | None = None,
    ) -> Profile:
        """Build a profile from a canonical event's customer reference (and profile body)."""

        def pick(a: str | None, b: str | None) -> str | None:
            return a if a not in (None, "") else b

        return cls(
            record_id=record_id,
            system=ref.system,
            external_id=ref.external_id,
            email=pick(body.email if body else None, ref.email),
            phone=pick(body.phone if body else None, ref.phone),
            first_name=pick(body.first_name if body else None, ref.first_name),
            last_name=pick(body.last_name if body else None, ref.last_name),
            date_of_birth=body.birth_date if body else None,
            zip=pick(body.zip if body else None, ref.zip),
            seen_at=seen_at,
        )


@dataclass(frozen=True, slots=True)
class NormalizedProfile:
    """A profile in comparable form. Names and address parts are folded keys without spaces.

    `flags` records what normalisation and the guards found ("email:invalid",
    "phone:placeholder", "email:shared", …). Identifier fields are only trusted through the
    derived `source_key`, `email_id`, `email_canonical_id`, `phone_id` and `address_usable`,
    which honour those flags.
    """

    record_id: str
    system: str | None = None
    external_id: str | None = None
    email: str | None = None
    email_canonical: str | None = None
    email_local: str | None = None
    phone: str | None = None
    phone_digits: str | None = None
    first_name: str | None = None
    first_token: str | None = None  # first word of the first name (nickname lookups)
    first_phonetic: str | None = None
    last_name: str | None = None
    last_phonetic: str | None = None
    suffix: str | None = None
    dob: str | None = None
    zip: str | None = None
    street_number: str | None = None
    street: str | None = None
    address2: str | None = None
    city: str | None = None
    state: str | None = None
    seen_at: datetime | None = None
    flags: frozenset[str] = field(default=frozenset())

    # Derived once, at construction (and again by dataclasses.replace): the identifier forms that
    # honour the guards' flags. Hot paths read them millions of times in a batch.
    source_key: tuple[str, str] | None = field(init=False, repr=False, compare=False)
    email_id: str | None = field(init=False, repr=False, compare=False)
    email_canonical_id: str | None = field(init=False, repr=False, compare=False)
    phone_id: str | None = field(init=False, repr=False, compare=False)
    address_usable: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flags = self.flags
        source_key = None
        if (
            self.system is not None
            and self.external_id is not None
            and "source:shared" not in flags
        ):
            source_key = (self.system, self.external_id)
        email_id = self.email
        if email_id is not None and ("email:placeholder" in flags or "email:shared" in flags):
            email_id = None
        canonical = self.email_canonical if email_id is not None else None
        if canonical is not None and "email_canonical:shared" in flags:
            canonical = None
        phone_id = self.phone
        if phone_id is not None and ("phone:placeholder" in flags or "phone:shared" in flags):
            phone_id = None
        set_ = object.__setattr__
        set_(self, "source_key", source_key)  # (system, external_id) unless shared
        set_(self, "email_id", email_id)  # the email as an identifier: not placeholder/shared
        set_(self, "email_canonical_id", canonical)
        set_(self, "phone_id", phone_id)  # the E.164 phone as an identifier
        set_(self, "address_usable", "address:shared" not in flags)

    @property
    def source_value(self) -> str | None:
        """`system` and `external_id` joined by a unit separator (the census and blocking form)."""
        if self.system is None or self.external_id is None:
            return None
        return f"{self.system}\x1f{self.external_id}"

    @property
    def address_key(self) -> str | None:
        """Postcode + house number + street: the unit the household frequency guard counts."""
        if self.street is None or self.zip is None:
            return None
        return f"{self.zip}|{self.street_number or ''}|{self.street}"

    def with_flags(self, *flags: str) -> NormalizedProfile:
        return replace(self, flags=self.flags | frozenset(flags))


# --------------------------------------------------------------------------------------------
# text folding

_SPECIAL_LETTERS = str.maketrans(
    {
        "ø": "o",
        "Ø": "o",
        "æ": "ae",
        "Æ": "ae",
        "œ": "oe",
        "Œ": "oe",
        "ß": "ss",
        "ł": "l",
        "Ł": "l",
        "đ": "d",
        "Đ": "d",
        "ð": "d",
        "Ð": "d",
        "þ": "th",
        "Þ": "th",
        "\u0131": "i",  # dotless i
    }
)
# ASCII apostrophe, right/left single quotation marks, grave and acute accents, modifier apostrophe
_APOSTROPHES = str.maketrans("", "", "'\u2019\u2018`\u00b4\u02bc")


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Unicode-fold: decompose, drop accents, casefold (Zoë → zoe, STRAßE → strasse)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL_LETTERS))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    # again after decomposing: "ǽ" only becomes "æ" there
    return stripped.translate(_SPECIAL_LETTERS).casefold()


def _tokens(text: str, *, keep_digits: bool) -> list[str]:
    """Fold and split on anything that is not a letter (or digit); apostrophes join (O'Brien)."""
    folded = fold(text).translate(_APOSTROPHES)
    out: list[str] = []
    current: list[str] = []
    for ch in folded:
        if ch.isalpha() or (keep_digits and ch.isdigit()):
            current.append(ch)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return out


# --------------------------------------------------------------------------------------------
# names

HONORIFICS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "mister",
        "missus",
        "madam",
        "dr",
        "doctor",
        "prof",
        "professor",
        "sir",
        "dame",
        "lady",
        "lord",
        "rev",
        "revd",
        "reverend",
        "fr",
        "jr",
        "jnr",
        "sr",
        "snr",
        "ii",
        "iii",
        "iv",
        "phd",
        "md",
        "esq",
        "mme",
        "mlle",
        "herr",
        "frau",
        "sra",
        "srta",
    }
)


@lru_cache(maxsize=65536)
def normalize_name(value: str) -> str | None:
    """Fold; drop punctuation, digits, honorifics and spaces ("Mary-Ann" → maryann).

    Spaces go because typists split and join names freely ("de la cruz", "delacruz"); the
    comparison works on the joined key.
    """
    tokens = [t for t in _tokens(value, keep_digits=False) if t not in HONORIFICS]
    joined = "".join(tokens)
    # "I0V" joins to "iv": the joined key must pass the same filter, or normalising twice differs
    return joined if joined and joined not in HONORIFICS else None


GENERATION_SUFFIXES = {
    "jr": "jr",
    "jnr": "jr",
    "junior": "jr",
    "sr": "sr",
    "snr": "sr",
    "senior": "sr",
    "ii": "ii",
    "iii": "iii",
    "iv": "iv",
}


@lru_cache(maxsize=65536)
def name_suffix(value: str) -> str | None:
    """The generational suffix in a name field (Jr., Sr., III), kept apart: it tells a father
    from a son who share a name, an address and often a phone."""
    for token in _tokens(value, keep_digits=False):
        if token in GENERATION_SUFFIXES:
            return GENERATION_SUFFIXES[token]
    return None


@lru_cache(maxsize=65536)
def _first_token(value: str) -> str | None:
    tokens = [t for t in _tokens(value, keep_digits=False) if t not in HONORIFICS]
    return tokens[0] if tokens else None


@lru_cache(maxsize=65536)
def phonetic(key: str) -> str:
    """Metaphone code of a name key, used only for blocking."""
    return jellyfish.metaphone(key) or key[:4]


# --------------------------------------------------------------------------------------------
# email

_SUBADDRESS_PLUS = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "fastmail.com",
        "fastmail.fm",
        "protonmail.com",
        "proton.me",
        "pm.me",
    }
)
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}


@dataclass(frozen=True, slots=True)
class EmailForms:
    email: str | None
    canonical: str | None
    local: str | None
    valid: bool


# A plain ASCII dot-atom local part and a plain ASCII domain: every such address is valid exactly
# when its domain is, so `email-validator` (about 50 µs an address) runs once per domain.
_PLAIN_LOCAL = re.compile(r"[a-z0-9_+\-]+(?:\.[a-z0-9_+\-]+)*")
_PLAIN_DOMAIN = re.compile(r"[a-z0-9\-]+(?:\.[a-z0-9\-]+)+")


@lru_cache(maxsize=65536)
def _domain_is_valid(domain: str) -> bool:
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return False
    return bool(checked.domain.casefold() == domain)


@lru_cache(maxsize=131072)
def normalize_email(value: str) -> EmailForms:
    """Trim and case-fold; validate syntax; derive the provider-canonical form.

    The canonical form (Gmail: dots and `+tag` dropped, googlemail → gmail; other known
    sub-addressing providers: `+tag` dropped) is for candidate search and a weaker comparison
    level only — two addresses that differ only there may still belong to two people.
    """
    text = value.strip().casefold()
    if not text:
        return EmailForms(None, None, None, False)
    local, _, domain = text.rpartition("@")
    if not (
        len(text) <= 254
        and 0 < len(local) <= 64
        and _PLAIN_LOCAL.fullmatch(local)
        and _PLAIN_DOMAIN.fullmatch(domain)
        and _domain_is_valid(domain)
    ):
        # anything but a plain ASCII address: the full RFC check
        try:
            checked = validate_email(text, check_deliverability=False)
        except EmailNotValidError:
            return EmailForms(None, None, None, False)
        local, domain = checked.local_part.casefold(), checked.domain.casefold()
    email = f"{local}@{domain}"
    canon_domain = _DOMAIN_ALIASES.get(domain, domain)
    canon_local = local
    if canon_domain in _SUBADDRESS_PLUS:
        canon_local = canon_local.split("+", 1)[0]
    if canon_domain == "gmail.com":
        canon_local = canon_local.replace(".", "")
    if not canon_local:
        canon_local = local
    return EmailForms(email, f"{canon_local}@{canon_domain}", canon_local, True)


# --------------------------------------------------------------------------------------------
# phone


@dataclass(frozen=True, slots=True)
class PhoneForms:
    e164: str | None
    digits: str | None
    flag: str | None  # "phone:invalid", "phone:no_region" or None


@lru_cache(maxsize=131072)
def normalize_phone(value: str, region: str | None) -> PhoneForms:
    """E.164 when `phonenumbers` can parse it and `is_valid_number` agrees; else digits as typed.

    A number without a leading `+` is only interpreted with a known region; with none it is kept
    as typed (digits) and flagged, never guessed into a country.
    """
    text = value.strip()
    digits = "".join(ch for ch in text if ch.isdigit()) or None
    if digits is None:
        return PhoneForms(None, None, "phone:invalid")
    international = text.startswith("+")
    if not international and region is None:
        return PhoneForms(None, digits, "phone:no_region")
    try:
        parsed = phonenumbers.parse(text, None if international else region)
    except phonenumbers.NumberParseException:
        return PhoneForms(None, digits, "phone:invalid")
    if not phonenumbers.is_valid_number(parsed):
        return PhoneForms(None, digits, "phone:invalid")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return PhoneForms(e164, e164[1:], None)


# --------------------------------------------------------------------------------------------
# dates of birth

_ISO_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ].*)?$")
_DMY_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")


def normalize_dob(value: str | date | None, *, day_first: bool | None = None) -> str | None:
    """`YYYYMMDD` string, or None when the value cannot be read without guessing.

    Eight-digit strings are kept as they are even when not a real date (a mistyped 19160017 still
    compares well with 19161017). `DD/MM/YYYY` vs `MM/DD/YYYY` is only read when the source says
    which (`day_first`) or the day is > 12.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().strftime("%Y%m%d")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    text = value.strip()
    if len(text) == 8 and text.isdigit():
        return text
    m = _ISO_DATE.match(text)
    if m:
        return f"{m.group(1)}{int(m.group(2)):02d}{int(m.group(3)):02d}"
    m = _DMY_DATE.match(text)
    if m:
        a, b, year = int(m.group(1)), int(m.group(2)), m.group(3)
        if day_first is None:
            if a > 12 >= b:
                day_first = True
            elif b > 12 >= a:
                day_first = False
            else:
                return None
        day, month = (a, b) if day_first else (b, a)
        return f"{year}{month:02d}{day:02d}"
    return None


# --------------------------------------------------------------------------------------------
# postcode and address

_ZIP_PLUS4 = re.compile(r"^(\d{5})-?\d{4}$")


@lru_cache(maxsize=65536)
def normalize_zip(value: str) -> str | None:
    """Upper-case alphanumerics without spaces; US ZIP+4 reduced to the five-digit ZIP."""
    text = value.strip()
    m = _ZIP_PLUS4.match(text)
    if m:
        return m.group(1)
    key = "".join(ch for ch in fold(text) if ch.isalnum()).upper()
    return key or None


STREET_TYPES = {
    "street": "st",
    "str": "st",
    "road": "rd",
    "avenue": "ave",
    "av": "ave",
    "crescent": "cres",
    "cresent": "cres",
    "cr": "cres",
    "place": "pl",
    "circuit": "cct",
    "close": "cl",
    "court": "ct",
    "drive": "dr",
    "lane": "ln",
    "terrace": "tce",
    "parade": "pde",
    "highway": "hwy",
    "boulevard": "blvd",
    "square": "sq",
    "grove": "gr",
    "esplanade": "esp",
    "parkway": "pkwy",
    "circle": "cir",
}
_GLUED_SUFFIXES = sorted(
    ((word, abbr) for word, abbr in STREET_TYPES.items() if len(word) >= 5),
    key=lambda item: -len(item[0]),
)
_UNIT_WORDS = frozenset({"unit", "apt", "apartment", "flat", "suite", "ste", "u"})


def _street_key(tokens: list[str]) -> str | None:
    key = "".join(STREET_TYPES.get(t, t) for t in tokens)
    for word, abbr in _GLUED_SUFFIXES:
        if key.endswith(word) and len(key) - len(word) >= 3:
            key = key[: -len(word)] + abbr
            break
    return key or None


@lru_cache(maxsize=65536)
def normalize_address(value: str) -> tuple[str | None, str | None]:
    """Split a street line into (house number, street key).

    "12 Smith Street" → ("12", "smithst"); "Unit 3, 12 Smith St" → ("12", "smithst");
    "2/98 latchford barracks" → ("98", "latchfordbarracks"). The street key drops spaces and
    abbreviates street types, so "pridhamstreet" and "Pridham St." meet.
    """
    tokens = _tokens(value.replace("/", " / ").replace("#", " # "), keep_digits=True)
    raw = fold(value)
    number: str | None = None
    rest: list[str] = []
    skip_next = False
    for i, tok in enumerate(tokens):
        if skip_next:
            skip_next = False
            continue
        if tok in _UNIT_WORDS and i + 1 < len(tokens) and any(c.isdigit() for c in tokens[i + 1]):
            skip_next = True  # the unit number is not the house number
            continue
        if number is None and not rest and any(c.isdigit() for c in tok):
            number = tok
            continue
        rest.append(tok)
    if number is not None and "/" in raw:
        # "2/98": unit 2 of number 98 (Australian style); the house number is after the slash
        m = re.search(r"(\d+[a-z]?)\s*/\s*(\d+[a-z]?)", raw)
        if m:
            number = m.group(2)
            rest = [t for t in rest if t != m.group(2)]
    rest = [t for t in rest if not t.isdigit()] if number is not None else rest
    return number, _street_key(rest)


@lru_cache(maxsize=65536)
def normalize_line2(value: str) -> str | None:
    """Second address line (building, locality, or the street when lines were swapped)."""
    return _street_key(_tokens(value, keep_digits=True))


@lru_cache(maxsize=65536)
def normalize_place(value: str) -> str | None:
    """Fold a locality or address line to a key without spaces or punctuation."""
    key = "".join(_tokens(value, keep_digits=True))
    return key or None


STATE_ABBREVIATIONS = {
    # Australia
    "newsouthwales": "nsw",
    "victoria": "vic",
    "queensland": "qld",
    "southaustralia": "sa",
    "westernaustralia": "wa",
    "tasmania": "tas",
    "northernterritory": "nt",
    "australiancapitalterritory": "act",
    # United States (the most populous; others compare as typed)
    "california": "ca",
    "texas": "tx",
    "florida": "fl",
    "newyork": "ny",
    "pennsylvania": "pa",
    "illinois": "il",
    "ohio": "oh",
    "georgia": "ga",
    "northcarolina": "nc",
    "michigan": "mi",
    "newjersey": "nj",
    "virginia": "va",
    "washington": "wa",
    "arizona": "az",
    "massachusetts": "ma",
    "tennessee": "tn",
    "indiana": "in",
    "maryland": "md",
    "missouri": "mo",
    "wisconsin": "wi",
    "colorado": "co",
    "minnesota": "mn",
    "oregon": "or",
}


def normalize_state(value: str) -> str | None:
    key = normalize_place(value)
    if key is None:
        return None
    return STATE_ABBREVIATIONS.get(key, key)


# --------------------------------------------------------------------------------------------
# the profile


@dataclass(frozen=True, slots=True)
class NormalizeConfig:
    """Per-source facts normalisation needs: the default phone region of each system.

    `regions` maps a system name to an ISO 3166 alpha-2 region ("AU", "US");
    `default_region` applies to systems not listed (None: national numbers stay as typed).
    `day_first` says how the sources write ambiguous numeric dates (None: do not guess).
    """

    regions: Mapping[str, str] = field(default_factory=dict)
    default_region: str | None = None
    day_first: bool | None = None

    def region_for(self, profile: Profile) -> str | None:
        if profile.region:
            return profile.region.upper()
        if profile.system is not None and profile.system in self.regions:
            return self.regions[profile.system].upper()
        return self.default_region.upper() if self.default_region else None


DEFAULT_NORMALIZE = NormalizeConfig()


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text or None


def normalize(profile: Profile, config: NormalizeConfig = DEFAULT_NORMALIZE) -> NormalizedProfile:
    """Normalise every field of a profile (pure; no guards applied yet)."""
    flags: set[str] = set()

    email = email_canonical = email_local = None
    raw_email = _clean(profile.email)
    if raw_email is not None:
        forms = normalize_email(raw_email)
        if forms.valid:
            email, email_canonical, email_local = forms.email, forms.canonical, forms.local
        else:
            flags.add("email:invalid")

    phone = phone_digits = None
    raw_phone = _clean(profile.phone)
    if raw_phone is not None:
        pforms = normalize_phone(raw_phone, config.region_for(profile))
        phone, phone_digits = pforms.e164, pforms.digits
        if pforms.flag:
            flags.add(pforms.flag)

    first = first_token = None
    raw_first = _clean(profile.first_name)
    if raw_first is not None:
        first = normalize_name(raw_first)
        first_token = _first_token(raw_first)

    last = None
    raw_last = _clean(profile.last_name)
    if raw_last is not None:
        last = normalize_name(raw_last)
    suffix = (name_suffix(raw_last) if raw_last else None) or (
        name_suffix(raw_first) if raw_first else None
    )

    dob = normalize_dob(profile.date_of_birth, day_first=config.day_first)
    if profile.date_of_birth not in (None, "") and dob is None:
        flags.add("dob:unparsed")

    number = street = None
    raw_address = _clean(profile.address)
    if raw_address is not None:
        number, street = normalize_address(raw_address)

    raw_zip = _clean(profile.zip)
    raw_address2 = _clean(profile.address2)
    raw_city = _clean(profile.city)
    raw_state = _clean(profile.state)
    if email is not None and email_canonical == email:
        email_canonical = email  # one string object, not two equal ones
    return NormalizedProfile(
        record_id=profile.record_id,
        system=_intern(_clean(profile.system)),
        external_id=_clean(profile.external_id),
        email=email,
        email_canonical=email_canonical,
        email_local=email_local,
        phone=phone,
        phone_digits=phone_digits,
        first_name=_intern(first),
        first_token=_intern(first_token) if first is not None else None,
        first_phonetic=_intern(phonetic(first)) if first else None,
        last_name=_intern(last),
        last_phonetic=_intern(phonetic(last)) if last else None,
        suffix=suffix,
        dob=_intern(dob),
        zip=_intern(normalize_zip(raw_zip)) if raw_zip else None,
        street_number=_intern(number),
        street=_intern(street),
        address2=normalize_line2(raw_address2) if raw_address2 else None,
        city=_intern(normalize_place(raw_city)) if raw_city else None,
        state=_intern(normalize_state(raw_state)) if raw_state else None,
        seen_at=profile.seen_at,
        flags=frozenset(flags) if flags else _NO_FLAGS,
    )


_NO_FLAGS: frozenset[str] = frozenset()


def _intern(value: str | None) -> str | None:
    """Share one string object per distinct value of low-cardinality fields (names, postcodes,
    dates): a million profiles hold a few thousand distinct values, not a million copies."""
    return None if value is None else sys.intern(value)
