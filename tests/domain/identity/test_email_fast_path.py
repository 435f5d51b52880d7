"""The plain-address fast path of `normalize_email` agrees with `email-validator` on every input:
valid or not, and the same normal form."""

from __future__ import annotations

import random

from email_validator import EmailNotValidError, validate_email

from handoff.domain.identity.normalize import normalize_email


def full_check(text: str) -> tuple[str | None, bool]:
    text = text.strip().casefold()
    if not text:
        return None, False
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None, False
    return f"{checked.local_part.casefold()}@{checked.domain.casefold()}", True


EDGES = [
    "a@b.com",
    " A.B@Example-Mail.ORG ",
    "a..b@c.com",
    ".a@b.com",
    "a.@b.com",
    "a@b",
    "a@-b.com",
    "a@b-.com",
    "a@b.123",
    "a@localhost",
    "a@x.local",
    "a@x.test",
    "a@x.invalid",
    "a@b.onion",
    "a@b.arpa",
    "x" * 65 + "@b.com",
    "a@" + "b" * 64 + ".com",
    "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com",
    "a@b..com",
    "a@.b.com",
    "a_b+c-d@mail.co.uk",
    "ü@b.com",
    "a@bü.com",
    "a@xn--bcher-kva.ch",
    "a@xn--a.com",
    "a@ab--cd.com",
    "a@1.2.3.4",
    "a@[1.2.3.4]",
    "a@b_c.com",
    "a@b.com.",
    "-a@b.com",
    "+@b.com",
    "test@test.com",
]


def _random_addresses(n: int) -> list[str]:
    rng = random.Random(5)
    alphabet = "ab.-_+1@x"
    domains = ["@gmail.com", "@b.co", "@x-y.org", "@x.a", "@xy.travel", "", "@a.b.c", "@12.com"]
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) + rng.choice(domains)
        for _ in range(n)
    ]


def test_fast_path_agrees_with_the_full_check() -> None:
    normalize_email.cache_clear()
    disagree = []
    for text in [*EDGES, *_random_addresses(5000)]:
        forms = normalize_email(text)
        if (forms.email, forms.valid) != full_check(text):
            disagree.append((text, forms))
    assert disagree == []
    assert normalize_email(" A.B@Example-Mail.ORG ").email == "a.b@example-mail.org"
    assert not normalize_email("a@x.test").valid
