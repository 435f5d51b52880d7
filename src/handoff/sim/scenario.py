"""A retailer's life as plain data: people, their profiles in each system, orders, refunds.

`generate(config)` is pure and seeded: the same `ScenarioConfig` gives the same `Scenario`,
value for value, on any machine (string-seeded `random.Random` streams, one per concern, so a
change to one rate does not reshuffle everything else; no wall clock, no hash ordering).

This is the *clean* world: what really happened. Faults (faults.py) are applied on top to
produce what each system sends and holds; the ground truth (truth.py) is derived from this.

The shape of the business (each rule is what a POS/ERP/CRM stack of the field does):
- People shop in stores (Shopify POS) and online (the Shopify storefront). The first order
  creates a Shopify customer; the ERP gets a twin customer (`C-…`) for every Shopify customer.
- A purchase at a second store creates a *new* Shopify customer at `cross_location_duplicate`
  rate (the cashier did not search); the storefront reuses a customer only when the email
  matches exactly (Shopify's own rule), so a till profile with a placeholder email and an
  online account are two customers.
- At the till, profiles pick up noise: placeholder emails (test@test.com), typos, no email,
  the cashier's own email, placeholder phones, every phone format, nicknames, odd casing.
  Households share one email and phone between two people.
- The CRM (HubSpot) syncs Shopify customers into contacts, deduplicating on email, so a
  placeholder email collapses unrelated people onto one contact. CRM users tick VIP by hand.
- The helpdesk (Zendesk) and the email platform (Klaviyo) know a subset of people, by email.
- Orders carry discounts, tax, shipping (online) and gift cards; POS orders are fulfilled at
  once, online ones within days; some online orders are cancelled before fulfilment; some
  fulfilled orders are refunded in part or in full. A few big spenders cross the VIP tier.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from handoff.sim.scenario_config import ScenarioConfig

WEB = "WEB"  # the online store's id

FIRST_NAMES: tuple[tuple[str, str | None], ...] = (
    ("Robert", "Bob"),
    ("William", "Bill"),
    ("Elizabeth", "Liz"),
    ("Katherine", "Kate"),
    ("Michael", "Mike"),
    ("Jennifer", "Jen"),
    ("Alexander", "Alex"),
    ("Margaret", "Peggy"),
    ("Richard", "Rick"),
    ("Daniel", "Dan"),
    ("Christopher", "Chris"),
    ("Samantha", "Sam"),
    ("Anthony", "Tony"),
    ("Joseph", "Joe"),
    ("Patricia", "Pat"),
    ("Rebecca", "Becky"),
    ("Thomas", "Tom"),
    ("Jessica", "Jess"),
    ("Nicholas", "Nick"),
    ("Victoria", "Vicky"),
    ("Ana", None),
    ("Chloé", None),
    ("Farid", None),
    ("Hiro", None),
    ("Kemi", None),
    ("Mateo", None),
    ("Nora", None),
    ("Omar", None),
    ("Priya", None),
    ("Sven", None),
    ("Aisha", None),
    ("Diego", None),
    ("Li", None),
    ("Zoë", None),
    ("Yusuf", None),
    ("Ingrid", None),
)
LAST_NAMES: tuple[str, ...] = (
    "Silva",
    "Okafor",
    "Martin",
    "Patel",
    "Nguyen",
    "Haddad",
    "Kim",
    "Tanaka",
    "Rossi",
    "Berg",
    "Adeyemi",
    "Walsh",
    "García",
    "Novak",
    "Aziz",
    "Lund",
    "Müller",
    "O'Brien",
    "Smith",
    "Johnson",
    "Brown",
    "Lopez",
    "Chen",
    "Kowalski",
    "Dubois",
    "Schmidt",
    "Andersson",
    "Moreau",
    "Costa",
    "Ivanova",
)
# Mailbox providers as customers use them (Gmail's dots and +tags exercise the provider-canonical
# form), plus two fictional ones. Not example.com/.net/.org: those are documentation domains,
# and handoff rightly treats an address there, typed at a till, as a placeholder.
EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "mail.example",
    "inbox.example",
)
TYPO_DOMAINS: dict[str, tuple[str, ...]] = {
    "gmail.com": ("gmial.com", "gmail.con", "gmal.com", "gmail.cm"),
    "outlook.com": ("outlok.com", "outlook.co", "outllook.com"),
    "yahoo.com": ("yaho.com", "yahoo.cm"),
    "icloud.com": ("iclod.com", "icloud.co"),
    "mail.example": ("mial.example", "mail.exmaple"),
    "inbox.example": ("inbx.example", "inbox.exampel"),
}
PLACEHOLDER_EMAILS: tuple[str, ...] = (
    "test@test.com",
    "noemail@noemail.com",
    "none@none.com",
    "no@email.com",
    "na@na.com",
)
PLACEHOLDER_PHONES: tuple[str, ...] = ("0000000000", "5555555555", "1111111111", "000-000-0000")
AREA_CODES: tuple[str, ...] = ("415", "212", "312", "617", "206", "503", "512", "303", "404", "305")
PHONE_FORMATS: tuple[str, ...] = (
    "e164",
    "national",
    "dashes",
    "dots",
    "digits",
    "one_dashes",
    "spaced_intl",
    "paren_intl",
)

# sku, unit price (minor units), category
CATALOG: tuple[tuple[str, int, str], ...] = (
    ("TEE-BLK-M", 1900, "apparel"),
    ("TEE-WHT-L", 1900, "apparel"),
    ("HOODIE-GRY", 5400, "apparel"),
    ("JEAN-32", 6900, "apparel"),
    ("SOCKS-3PK", 1200, "accessories"),
    ("CAP-NAVY", 2400, "accessories"),
    ("BAG-TOTE", 3900, "accessories"),
    ("MUG-ENAMEL", 1450, "home"),
    ("CANDLE-FIG", 2800, "home"),
    ("SNEAKER-42", 11900, "footwear"),
)
PREMIUM: tuple[tuple[str, int, str], ...] = (
    ("JACKET-WOOL", 18900, "apparel"),
    ("BOOT-LEATHER", 21900, "footwear"),
    ("THROW-WOOL", 8900, "home"),
    ("LAMP-BRASS", 24900, "home"),
    ("WATCH-STEEL", 45900, "accessories"),
)
GIFT_CARD = ("GC-50", 5000, "gift_card")
DISCOUNT_PERCENTS: tuple[int, ...] = (10, 15, 20, 25)


def rng_for(seed: int, stream: str) -> random.Random:
    """An independent, reproducible random stream (string seeds hash with SHA-512)."""
    return random.Random(f"handoff-sim:{seed}:{stream}")


def money(minor: int) -> str:
    """Minor units → decimal string in major units ("12.50"); never negative here."""
    sign = "-" if minor < 0 else ""
    value = abs(minor)
    return f"{sign}{value // 100}.{value % 100:02d}"


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with `Z`, second precision: the format every export and payload uses."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Person:
    """One real human (the unit of ground truth)."""

    person_id: str
    first_name: str
    last_name: str
    nickname: str | None
    email: str  # their real address (shared within a household)
    phone: str  # E.164 (shared within a household)
    zip: str
    home_store: str
    household_id: str | None
    big_spender: bool


@dataclass(frozen=True, slots=True)
class ShopCustomer:
    """A Shopify customer (POS or storefront) and its ERP twin, as typed at capture."""

    shopify_id: int
    erp_id: str
    person_id: str
    created_at: datetime
    store_id: str  # where it was captured; WEB for the storefront
    email: str | None
    phone: str | None
    first_name: str
    last_name: str
    zip: str
    accepts_marketing: bool
    noise: tuple[str, ...]

    @property
    def gid(self) -> str:
        return f"gid://shopify/Customer/{self.shopify_id}"

    @property
    def channel(self) -> str:
        return "online" if self.store_id == WEB else "pos"


@dataclass(frozen=True, slots=True)
class Line:
    line_id: int
    sku: str
    quantity: int
    unit_price: int
    discount: int  # the line's total discount over all units
    category: str
    gift_card: bool = False

    @property
    def gross(self) -> int:
        return self.unit_price * self.quantity

    @property
    def net(self) -> int:
        return self.gross - self.discount


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the ERP (the authoritative record) knows it, with its Shopify twin ids."""

    order_id: str  # ERP
    shopify_id: int
    number: int  # Shopify order number (#1001)
    person_id: str
    shopify_customer_id: int
    erp_customer_id: str
    channel: str  # pos | online
    store_id: str
    currency: str
    lines: tuple[Line, ...]
    tax: int
    shipping: int
    placed_at: datetime
    paid_at: datetime
    fulfilled_at: datetime | None
    cancelled_at: datetime | None

    @property
    def subtotal(self) -> int:
        return sum(line.gross for line in self.lines)

    @property
    def discount(self) -> int:
        return sum(line.discount for line in self.lines)

    @property
    def gift_card(self) -> int:
        return sum(line.net for line in self.lines if line.gift_card)

    @property
    def net_merchandise(self) -> int:
        return self.subtotal - self.discount - self.gift_card

    @property
    def total(self) -> int:
        return self.subtotal - self.discount + self.tax + self.shipping

    @property
    def status(self) -> str:
        if self.cancelled_at is not None:
            return "cancelled"
        if self.fulfilled_at is not None:
            return "fulfilled"
        return "paid"

    @property
    def shopify_gid(self) -> str:
        return f"gid://shopify/Order/{self.shopify_id}"


@dataclass(frozen=True, slots=True)
class RefundLine:
    line_id: int
    sku: str
    quantity: int
    amount: int  # after the line's discount share


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: str  # ERP
    shopify_id: int
    order_id: str
    refunded_at: datetime
    amount: int  # merchandise refunded after discounts (gift cards, tax, shipping excluded)
    lines: tuple[RefundLine, ...]
    full: bool


@dataclass(frozen=True, slots=True)
class CrmContact:
    """A HubSpot contact, synced from Shopify customers and deduplicated on email."""

    contact_id: int
    created_at: datetime
    email: str | None
    phone: str | None
    first_name: str
    last_name: str
    zip: str
    shopify_ids: tuple[int, ...]
    person_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ManualVip:
    """A CRM user ticking VIP by hand on a contact."""

    contact_id: int
    person_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DestinationProfile:
    """A helpdesk user (Zendesk) or an email/SMS profile (Klaviyo), keyed by email."""

    system: str  # helpdesk | comms
    external_id: str
    created_at: datetime
    email: str
    phone: str | None
    first_name: str
    last_name: str
    person_ids: tuple[str, ...]


@dataclass(frozen=True)
class Scenario:
    """The clean world. Tuples in id order; every time is UTC and within [start, end]."""

    config: ScenarioConfig
    start: datetime
    end: datetime
    people: tuple[Person, ...]
    customers: tuple[ShopCustomer, ...]
    orders: tuple[Order, ...]
    refunds: tuple[Refund, ...]
    contacts: tuple[CrmContact, ...]
    manual_vips: tuple[ManualVip, ...]
    helpdesk_users: tuple[DestinationProfile, ...]
    comms_profiles: tuple[DestinationProfile, ...]
    _index: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def customer(self, shopify_id: int) -> ShopCustomer:
        table = self._index.setdefault("customers", {c.shopify_id: c for c in self.customers})
        assert isinstance(table, dict)
        found: ShopCustomer = table[shopify_id]
        return found

    def order(self, order_id: str) -> Order:
        table = self._index.setdefault("orders", {o.order_id: o for o in self.orders})
        assert isinstance(table, dict)
        found: Order = table[order_id]
        return found

    def refunds_of(self, order_id: str) -> tuple[Refund, ...]:
        return tuple(r for r in self.refunds if r.order_id == order_id)

    def contact_for(self, shopify_id: int) -> CrmContact:
        table = self._index.setdefault(
            "contact_by_customer",
            {sid: c for c in self.contacts for sid in c.shopify_ids},
        )
        assert isinstance(table, dict)
        found: CrmContact = table[shopify_id]
        return found


# --- generation ---------------------------------------------------------------------------------


def _ascii(text: str) -> str:
    table = str.maketrans(
        {"é": "e", "ë": "e", "ü": "u", "ö": "o", "í": "i", "á": "a", "'": "", "ï": "i"}
    )
    return text.lower().translate(table)


def format_phone(e164: str, style: str) -> str:
    """A US E.164 number written the ways people and tills write it."""
    digits = e164.removeprefix("+1")
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    formats = {
        "e164": e164,
        "national": f"({area}) {exchange}-{line}",
        "dashes": f"{area}-{exchange}-{line}",
        "dots": f"{area}.{exchange}.{line}",
        "digits": digits,
        "one_dashes": f"1-{area}-{exchange}-{line}",
        "spaced_intl": f"+1 {area} {exchange} {line}",
        "paren_intl": f"+1 ({area}) {exchange}-{line}",
    }
    return formats[style]


def _typo_email(email: str, rng: random.Random) -> str:
    local, _, domain = email.partition("@")
    choice = rng.randrange(3)
    if choice == 0 and domain in TYPO_DOMAINS:
        return f"{local}@{rng.choice(TYPO_DOMAINS[domain])}"
    if choice == 1 and len(local) > 3:
        i = rng.randrange(1, len(local) - 1)
        return f"{local[:i]}{local[i + 1]}{local[i]}{local[i + 2 :]}@{domain}"
    if len(local) > 3:
        i = rng.randrange(1, len(local) - 1)
        return f"{local[:i]}{local[i + 1 :]}@{domain}"
    return f"{local}@{rng.choice(TYPO_DOMAINS.get(domain, (domain + 'm',)))}"


class _Builder:
    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.seed = config.seed
        self.start = config.scenario.start
        self.end = self.start + timedelta(days=config.scenario.days)
        self.people: list[Person] = []
        self.customers: list[ShopCustomer] = []
        self.orders: list[Order] = []
        self.refunds: list[Refund] = []
        self._next_customer = 7_000_000_001
        self._next_line = 13_000_000_001

    # --- people ----------------------------------------------------------------------------

    def build_people(self) -> None:
        rng = rng_for(self.seed, "people")
        cfg = self.config
        stores = cfg.scenario.stores
        used_emails: set[str] = set()
        used_phones: set[str] = set()
        count = cfg.scenario.customers
        index = 0
        household = 0
        while index < count:
            first, nick = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES)
            store_no = rng.randrange(len(stores))
            home = stores[store_no]
            zip_code = f"{94100 + store_no * 100 + rng.randrange(40):05d}"
            email = self._unique_email(first, last, rng, used_emails)
            phone = self._unique_phone(rng, used_phones)
            big = rng.random() < cfg.orders.big_spender_rate
            shares = index + 1 < count and rng.random() < cfg.noise.household_rate
            household_id = f"H{household + 1:04d}" if shares else None
            self.people.append(
                Person(
                    f"P{index + 1:05d}",
                    first,
                    last,
                    nick,
                    email,
                    phone,
                    zip_code,
                    home,
                    household_id,
                    big,
                )
            )
            index += 1
            if shares:
                household += 1
                partner_first, partner_nick = rng.choice(FIRST_NAMES)
                while partner_first == first:
                    partner_first, partner_nick = rng.choice(FIRST_NAMES)
                partner_last = last if rng.random() < 0.7 else rng.choice(LAST_NAMES)
                self.people.append(
                    Person(
                        f"P{index + 1:05d}",
                        partner_first,
                        partner_last,
                        partner_nick,
                        email,
                        phone,
                        zip_code,
                        home,
                        household_id,
                        rng.random() < cfg.orders.big_spender_rate,
                    )
                )
                index += 1

    @staticmethod
    def _unique_email(first: str, last: str, rng: random.Random, used: set[str]) -> str:
        f, last_ascii = _ascii(first), _ascii(last).replace(" ", "")
        patterns = (
            f"{f}.{last_ascii}",
            f"{f[0]}{last_ascii}",
            f"{f}{last_ascii}",
            f"{f}_{last_ascii}",
        )
        base = rng.choice(patterns)
        domain = rng.choice(EMAIL_DOMAINS)
        email = f"{base}@{domain}"
        n = 1
        while email in used:
            n += 1
            email = f"{base}{n}@{domain}"
        used.add(email)
        return email

    @staticmethod
    def _unique_phone(rng: random.Random, used: set[str]) -> str:
        while True:
            area = rng.choice(AREA_CODES)
            phone = f"+1{area}{rng.randrange(200, 1000):03d}{rng.randrange(10_000):04d}"
            if phone not in used:
                used.add(phone)
                return phone

    # --- Shopify customers -----------------------------------------------------------------

    def _capture(
        self, person: Person, store: str, at: datetime, rng: random.Random, duplicate: bool
    ) -> ShopCustomer:
        """A new Shopify customer for `person`, typed at `store` (noise at the till only)."""
        noise_cfg = self.config.noise
        noise: list[str] = []
        if duplicate:
            noise.append("cross_location_duplicate")
        if person.household_id is not None:
            noise.append("shared_household_email_phone")
        email: str | None = person.email
        phone: str | None = format_phone(person.phone, rng.choice(PHONE_FORMATS))
        first, last = person.first_name, person.last_name
        if store != WEB:
            roll = rng.random()
            cut = noise_cfg.placeholder_email_rate
            if roll < cut:
                email = rng.choice(PLACEHOLDER_EMAILS)
                noise.append("placeholder_email")
            elif roll < (cut := cut + noise_cfg.typo_email_rate):
                email = _typo_email(person.email, rng)
                noise.append("typo_email")
            elif roll < (cut := cut + noise_cfg.no_email_rate):
                email = None
                noise.append("no_email")
            elif roll < cut + noise_cfg.staff_email_rate:
                email = f"staff.{store.lower()}@sim-retail.example"
                noise.append("staff_email")
            roll = rng.random()
            if roll < noise_cfg.placeholder_phone_rate:
                phone = rng.choice(PLACEHOLDER_PHONES)
                noise.append("placeholder_phone")
            elif roll < noise_cfg.placeholder_phone_rate + noise_cfg.no_phone_rate:
                phone = None
                noise.append("no_phone")
            if person.nickname and rng.random() < noise_cfg.nickname_rate:
                first = person.nickname
                noise.append("nickname")
            if rng.random() < noise_cfg.name_case_rate:
                first, last = (
                    (first.upper(), last.upper())
                    if rng.random() < 0.5
                    else (
                        first.lower(),
                        last.lower(),
                    )
                )
                noise.append("name_case")
        elif rng.random() < 0.3:
            phone = None
        shopify_id = self._next_customer
        self._next_customer += 1
        customer = ShopCustomer(
            shopify_id=shopify_id,
            erp_id=f"C-{shopify_id - 7_000_000_000 + 10_000}",
            person_id=person.person_id,
            created_at=at,
            store_id=store,
            email=email,
            phone=phone,
            first_name=first,
            last_name=last,
            zip=person.zip,
            accepts_marketing=rng.random() < self.config.crm.comms_rate,
            noise=tuple(noise),
        )
        self.customers.append(customer)
        return customer

    def _customer_for(
        self,
        person: Person,
        store: str,
        at: datetime,
        mine: list[ShopCustomer],
        rng: random.Random,
    ) -> ShopCustomer:
        if store == WEB:
            for existing in mine:
                if existing.email == person.email:
                    return existing  # Shopify matches the storefront login by exact email
            created = self._capture(person, WEB, at, rng, duplicate=bool(mine))
            mine.append(created)
            return created
        for existing in mine:
            if existing.store_id == store:
                return existing
        if mine and rng.random() >= self.config.noise.cross_location_duplicate_rate:
            return mine[0]  # the cashier found the customer
        created = self._capture(person, store, at, rng, duplicate=bool(mine))
        mine.append(created)
        return created

    # --- orders ----------------------------------------------------------------------------

    def build_orders(self) -> None:
        rng = rng_for(self.seed, "orders")
        cfg = self.config.orders
        stores = self.config.scenario.stores
        span = (self.end - self.start).total_seconds()
        plans: list[tuple[datetime, Person, str]] = []
        for person in self.people:
            mean = cfg.orders_per_customer * (2.0 if person.big_spender else 1.0)
            count = 1 + (int(rng.expovariate(1.0 / (mean - 1.0))) if mean > 1.0 else 0)
            count = min(count, 40)
            for _ in range(count):
                at = self.start + timedelta(seconds=int(rng.uniform(60, span * 0.97)))
                if rng.random() < cfg.online_share:
                    store = WEB
                elif len(stores) > 1 and rng.random() < cfg.second_store_rate:
                    store = rng.choice([s for s in stores if s != person.home_store])
                else:
                    store = person.home_store
                plans.append((at, person, store))
        plans.sort(key=lambda p: (p[0], p[1].person_id))
        owned: dict[str, list[ShopCustomer]] = {}
        capture_rng = rng_for(self.seed, "capture")
        for number, (at, person, store) in enumerate(plans, start=1):
            mine = owned.setdefault(person.person_id, [])
            customer = self._customer_for(
                person, store, at - timedelta(minutes=3), mine, capture_rng
            )
            self.orders.append(self._order(number, at, person, customer, store, rng))
        self._build_refunds(rng_for(self.seed, "refunds"))

    def _lines(self, person: Person, rng: random.Random) -> list[Line]:
        cfg = self.config.orders
        pool = PREMIUM if person.big_spender and rng.random() < 0.7 else CATALOG
        picks = [rng.choice(pool) for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4)))]
        lines: list[Line] = []
        for sku, price, category in picks:
            lines.append(
                Line(self._next_line, sku, 2 if rng.random() < 0.15 else 1, price, 0, category)
            )
            self._next_line += 1
        if rng.random() < cfg.discount_rate:
            percent = rng.choice(DISCOUNT_PERCENTS)
            lines = [
                Line(
                    line.line_id,
                    line.sku,
                    line.quantity,
                    line.unit_price,
                    line.gross * percent // 100,
                    line.category,
                )
                for line in lines
            ]
        if rng.random() < cfg.gift_card_rate:
            sku, price, category = GIFT_CARD
            lines.append(Line(self._next_line, sku, 1, price, 0, category, gift_card=True))
            self._next_line += 1
        return lines

    def _order(
        self,
        number: int,
        at: datetime,
        person: Person,
        customer: ShopCustomer,
        store: str,
        rng: random.Random,
    ) -> Order:
        cfg = self.config.orders
        lines = self._lines(person, rng)
        taxable = sum(line.net for line in lines if not line.gift_card)
        tax = (taxable * cfg.tax_rate_bp + 5000) // 10_000
        online = store == WEB
        free_over = int(cfg.free_shipping_over * 100)
        shipping = int(cfg.shipping * 100) if online and taxable < free_over else 0
        paid = at if not online else at + timedelta(minutes=rng.randint(1, 10))
        fulfilled: datetime | None
        cancelled: datetime | None = None
        if online and rng.random() < cfg.cancel_rate:
            cancelled = paid + timedelta(minutes=rng.randint(30, 24 * 60))
            fulfilled = None
        elif online:
            fulfilled = paid + timedelta(
                seconds=rng.randint(4 * 3600, max(4 * 3600, cfg.fulfil_days_max * 86_400))
            )
        else:
            fulfilled = at + timedelta(minutes=1)
        if cancelled is not None and cancelled > self.end:
            cancelled = None
        if fulfilled is not None and fulfilled > self.end:
            fulfilled = None
        return Order(
            order_id=f"SO-{100_000 + number}",
            shopify_id=5_100_000_000 + number,
            number=1000 + number,
            person_id=person.person_id,
            shopify_customer_id=customer.shopify_id,
            erp_customer_id=customer.erp_id,
            channel="online" if online else "pos",
            store_id=store,
            currency=self.config.program.currency,
            lines=tuple(lines),
            tax=tax,
            shipping=shipping,
            placed_at=at,
            paid_at=paid,
            fulfilled_at=fulfilled,
            cancelled_at=cancelled,
        )

    def _build_refunds(self, rng: random.Random) -> None:
        cfg = self.config.orders
        serial = 0
        for order in self.orders:
            if order.fulfilled_at is None:
                continue
            merch = [line for line in order.lines if not line.gift_card]
            roll = rng.random()
            when = order.fulfilled_at + timedelta(
                seconds=rng.randint(86_400, cfg.refund_days_max * 86_400)
            )
            if roll < cfg.full_refund_rate:
                refund_lines = tuple(
                    RefundLine(line.line_id, line.sku, line.quantity, line.net) for line in merch
                )
                full = True
            elif roll < cfg.full_refund_rate + cfg.partial_refund_rate and (
                len(merch) > 1 or merch[0].quantity > 1
            ):
                line = rng.choice(merch)
                share = line.discount // line.quantity
                refund_lines = (RefundLine(line.line_id, line.sku, 1, line.unit_price - share),)
                full = False
            else:
                continue
            if when > self.end:
                continue
            serial += 1
            self.refunds.append(
                Refund(
                    refund_id=f"RF-{50_000 + serial}",
                    shopify_id=9_000_000_000 + serial,
                    order_id=order.order_id,
                    refunded_at=when,
                    amount=sum(r.amount for r in refund_lines),
                    lines=refund_lines,
                    full=full,
                )
            )

    # --- CRM, helpdesk, comms ----------------------------------------------------------------

    def build_contacts(self) -> tuple[list[CrmContact], list[ManualVip]]:
        by_key: dict[str, list[ShopCustomer]] = {}
        for customer in sorted(self.customers, key=lambda c: (c.created_at, c.shopify_id)):
            key = customer.email.lower() if customer.email else f"#{customer.shopify_id}"
            by_key.setdefault(key, []).append(customer)
        groups = sorted(by_key.values(), key=lambda g: (g[0].created_at, g[0].shopify_id))
        contacts: list[CrmContact] = []
        for n, group in enumerate(groups, start=1):
            head = group[0]
            contacts.append(
                CrmContact(
                    contact_id=51_000_000 + n,
                    created_at=head.created_at + timedelta(minutes=5),
                    email=head.email,
                    phone=head.phone,
                    first_name=head.first_name,
                    last_name=head.last_name,
                    zip=head.zip,
                    shopify_ids=tuple(c.shopify_id for c in group),
                    person_ids=tuple(sorted({c.person_id for c in group})),
                )
            )
        rng = rng_for(self.seed, "crm")
        first_contact: dict[str, CrmContact] = {}
        for contact in contacts:
            for pid in contact.person_ids:
                first_contact.setdefault(pid, contact)
        vips: list[ManualVip] = []
        for person in self.people:
            if person.person_id in first_contact and rng.random() < self.config.crm.manual_vip_rate:
                contact = first_contact[person.person_id]
                span = (self.end - contact.created_at).total_seconds()
                at = contact.created_at + timedelta(seconds=int(rng.uniform(3600, max(3601, span))))
                if at <= self.end:
                    vips.append(ManualVip(contact.contact_id, person.person_id, at))
        vips.sort(key=lambda v: (v.at, v.contact_id))
        return contacts, vips

    def build_destinations(self) -> tuple[list[DestinationProfile], list[DestinationProfile]]:
        rng = rng_for(self.seed, "destinations")
        first_seen: dict[str, datetime] = {}
        for customer in self.customers:
            first_seen.setdefault(customer.person_id, customer.created_at)
        marketing = {c.person_id for c in self.customers if c.accepts_marketing}
        helpdesk: dict[str, DestinationProfile] = {}
        comms: dict[str, DestinationProfile] = {}
        for person in self.people:
            seen = first_seen.get(person.person_id)
            if seen is None:
                continue
            if rng.random() < self.config.crm.helpdesk_rate:
                _add_destination(
                    helpdesk, "helpdesk", person, seen + timedelta(days=rng.randint(1, 30))
                )
            if person.person_id in marketing:
                _add_destination(comms, "comms", person, seen + timedelta(minutes=10))
        return _number(helpdesk.values(), "helpdesk"), _number(comms.values(), "comms")


def _add_destination(
    table: dict[str, DestinationProfile], system: str, person: Person, at: datetime
) -> None:
    existing = table.get(person.email)
    if existing is not None:  # keyed by email: a household shares one user/profile
        table[person.email] = DestinationProfile(
            system,
            "",
            existing.created_at,
            existing.email,
            existing.phone,
            existing.first_name,
            existing.last_name,
            tuple(sorted({*existing.person_ids, person.person_id})),
        )
        return
    table[person.email] = DestinationProfile(
        system,
        "",
        at,
        person.email,
        person.phone,
        person.first_name,
        person.last_name,
        (person.person_id,),
    )


def _number(profiles: Iterable[DestinationProfile], system: str) -> list[DestinationProfile]:
    ordered = sorted(profiles, key=lambda p: (p.created_at, p.email))
    out = []
    for n, p in enumerate(ordered, start=1):
        external = str(3_600_000_000 + n) if system == "helpdesk" else f"01SIMPROFILE{n:014d}"
        out.append(
            DestinationProfile(
                p.system,
                external,
                p.created_at,
                p.email,
                p.phone,
                p.first_name,
                p.last_name,
                p.person_ids,
            )
        )
    return out


def generate(config: ScenarioConfig | None = None) -> Scenario:
    """The clean, seeded world for `config` (defaults when None)."""
    config = config or ScenarioConfig()
    builder = _Builder(config)
    builder.build_people()
    builder.build_orders()
    contacts, vips = builder.build_contacts()
    helpdesk, comms = builder.build_destinations()
    return Scenario(
        config=config,
        start=builder.start,
        end=builder.end,
        people=tuple(builder.people),
        customers=tuple(sorted(builder.customers, key=lambda c: c.shopify_id)),
        orders=tuple(builder.orders),
        refunds=tuple(builder.refunds),
        contacts=tuple(contacts),
        manual_vips=tuple(vips),
        helpdesk_users=tuple(helpdesk),
        comms_profiles=tuple(comms),
    )


def decimal_money(minor: int) -> Decimal:
    return Decimal(minor) / 100
