"""Signed sample webhooks from a small retailer's stack, with the field's usual faults mixed in.

A seeded story: customers sign up at the till (Shopify POS), buy in store and online, the ERP
posts the authoritative order lifecycle (Standard Webhooks), the CRM (HubSpot) flags a VIP, the
loyalty platform (LoyaltyLion) reports points. Then the faults: a vendor retry of a delivery
already acknowledged, a request signed with the wrong secret, a HubSpot request replayed after
its 5-minute window, a body that is not JSON, and an ERP event missing a required field.
Each sample carries the outcome the gateway should report, so the demo can show both side by side.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.connectors import hubspot, loyaltylion, shopify, standard

FIRST = [
    "Ana",
    "Ben",
    "Chloé",
    "Dev",
    "Eve",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jon",
    "Kemi",
    "Liz",
    "Mateo",
    "Nora",
    "Omar",
    "Pia",
]
LAST = [
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
]
SKUS = [
    ("TEE-BLK-M", "1900", "apparel"),
    ("JEAN-32", "6900", "apparel"),
    ("MUG-ENAMEL", "1450", "home"),
    ("CANDLE-FIG", "2800", "home"),
    ("SNEAKER-42", "11900", "footwear"),
]

# The secrets the demo configures for its sources (the demo's own, never real ones).
DEMO_SECRETS: dict[str, str] = {
    "DEMO_POS_SECRET": "demo-shopify-pos-secret",
    "DEMO_CRM_SECRET": "demo-hubspot-client-secret",
    "DEMO_ERP_SECRET": "whsec_ZGVtby1lcnAtc2lnbmluZy1rZXktMzItYnl0ZXMhIQ==",
    "DEMO_LOYALTY_SECRET": "demo-loyaltylion-secret",
}

DEMO_SOURCES: dict[str, dict[str, str]] = {
    "pos": {"vendor": "shopify", "role": "pos", "secret_env": "DEMO_POS_SECRET"},
    "crm": {"vendor": "hubspot", "role": "crm", "secret_env": "DEMO_CRM_SECRET"},
    "erp": {"vendor": "standard", "role": "erp", "secret_env": "DEMO_ERP_SECRET"},
    "loyalty": {"vendor": "loyaltylion", "role": "loyalty", "secret_env": "DEMO_LOYALTY_SECRET"},
}


@dataclass(frozen=True)
class Sample:
    source: str
    label: str
    body: bytes
    headers: dict[str, str]
    expect: str  # stored | duplicate | rejected | quarantined


def _secret(source: str) -> str:
    return DEMO_SECRETS[DEMO_SOURCES[source]["secret_env"]]


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class _Story:
    def __init__(self, base_url: str, seed: int, now: datetime) -> None:
        self.base_url = base_url
        self.rng = random.Random(seed)
        self.now = now
        self.samples: list[Sample] = []

    def url(self, source: str) -> str:
        return f"{self.base_url}/hooks/{source}"

    def shopify(
        self,
        topic: str,
        payload: dict[str, Any],
        label: str,
        expect: str = "stored",
        webhook_id: str | None = None,
        secret: str | None = None,
    ) -> Sample:
        body = json.dumps(payload).encode()
        headers = shopify.sign(
            (secret or _secret("pos")).encode(),
            body,
            topic=topic,
            webhook_id=webhook_id or str(uuid.UUID(int=self.rng.getrandbits(128))),
            shop_domain="demo-retail.myshopify.com",
            api_version="2026-10",
            triggered_at=_iso(self.now),
        )
        sample = Sample("pos", label, body, headers | {"Content-Type": "application/json"}, expect)
        self.samples.append(sample)
        return sample

    def erp(
        self, type_: str, data: dict[str, Any], when: datetime, label: str, expect: str = "stored"
    ) -> Sample:
        body = json.dumps({"type": type_, "timestamp": _iso(when), "data": data}).encode()
        msg_id = f"msg_{self.rng.getrandbits(64):016x}"
        headers = standard.sign(_secret("erp"), msg_id, self.now, body)
        sample = Sample("erp", label, body, headers | {"Content-Type": "application/json"}, expect)
        self.samples.append(sample)
        return sample

    def hubspot(
        self,
        events: list[dict[str, Any]],
        label: str,
        expect: str = "stored",
        sent_at: datetime | None = None,
    ) -> Sample:
        body = json.dumps(events).encode()
        ts = int((sent_at or self.now).timestamp() * 1000)
        headers = hubspot.sign_v3(_secret("crm").encode(), "POST", self.url("crm"), body, ts)
        sample = Sample("crm", label, body, headers | {"Content-Type": "application/json"}, expect)
        self.samples.append(sample)
        return sample

    def loyalty(self, payload: dict[str, Any], label: str) -> Sample:
        body = json.dumps(payload).encode()
        headers = loyaltylion.sign(_secret("loyalty").encode(), body)
        sample = Sample(
            "loyalty", label, body, headers | {"Content-Type": "application/json"}, "stored"
        )
        self.samples.append(sample)
        return sample


def build_samples(
    base_url: str, *, customers: int = 40, seed: int = 7, now: datetime | None = None
) -> list[Sample]:
    """The demo's webhooks, in the order a busy afternoon would send them."""
    now = now or datetime.now(UTC)
    story = _Story(base_url, seed, now)
    rng = story.rng
    order_no = 1000
    hub_event = 9_000_000
    for c in range(customers):
        first, last = FIRST[c % len(FIRST)], LAST[(c * 7) % len(LAST)]
        email = f"{first.lower()}.{last.lower()}{c}@example.com".replace("é", "e")
        customer_id = 700_000 + c
        signup = now - timedelta(days=rng.randint(20, 90))
        story.shopify(
            "customers/create",
            {
                "id": customer_id,
                "email": email,
                "first_name": first,
                "last_name": last,
                "phone": f"+1415555{c:04d}",
                "created_at": _iso(signup),
                "updated_at": _iso(signup),
                "tags": "",
                "default_address": {"zip": f"94{c % 100:03d}"},
            },
            "till signup",
        )
        for _ in range(rng.randint(1, 3)):
            order_no += 1
            placed = signup + timedelta(days=rng.randint(1, 15), minutes=rng.randint(0, 600))
            lines = [rng.choice(SKUS) for _ in range(rng.randint(1, 3))]
            subtotal = sum(int(price) for _, price, _ in lines)
            discount = 500 if subtotal > 8000 else 0
            tax, shipping = subtotal * 8 // 100, 0 if c % 2 else 595
            erp_order = {
                "order_id": f"SO-{order_no}",
                "customer": {
                    "id": f"C{customer_id}",
                    "email": email,
                    "first_name": first,
                    "last_name": last,
                },
                "currency": "USD",
                "subtotal": _money(subtotal),
                "discount": _money(discount),
                "tax": _money(tax),
                "shipping": _money(shipping),
                "channel": "pos" if c % 2 else "online",
                "lines": [
                    {"sku": sku, "quantity": 1, "unit_price": _money(int(price)), "category": cat}
                    for sku, price, cat in lines
                ],
                "placed_at": _iso(placed),
            }
            story.erp("order.placed", erp_order, placed, "order placed")
            paid = placed + timedelta(minutes=2)
            story.erp("order.paid", erp_order | {"paid_at": _iso(paid)}, paid, "order paid")
            shipped = paid + timedelta(days=rng.randint(0, 3))
            story.erp(
                "order.fulfilled",
                erp_order | {"fulfilled_at": _iso(shipped)},
                shipped,
                "order fulfilled",
            )
            story.shopify(
                "orders/paid",
                {
                    "id": 4_500_000 + order_no,
                    "email": email,
                    "currency": "USD",
                    "financial_status": "paid",
                    "created_at": _iso(placed),
                    "processed_at": _iso(paid),
                    "total_line_items_price": _money(subtotal),
                    "subtotal_price": _money(subtotal - discount),
                    "total_discounts": _money(discount),
                    "total_tax": _money(tax),
                    "total_price": _money(subtotal - discount + tax),
                    "source_name": "pos" if c % 2 else "web",
                    "customer": {"id": customer_id, "email": email},
                    "line_items": [
                        {
                            "id": i + 1,
                            "sku": sku,
                            "quantity": 1,
                            "price": _money(int(p)),
                            "total_discount": "0.00",
                        }
                        for i, (sku, p, _) in enumerate(lines)
                    ],
                },
                "POS/online order paid",
            )
            if rng.random() < 0.15:
                refunded = shipped + timedelta(days=5)
                _sku, price, _ = lines[0]
                story.erp(
                    "order.refunded",
                    {
                        "order_id": f"SO-{order_no}",
                        "refund_id": f"RF-{order_no}",
                        "currency": "USD",
                        "amount": _money(int(price)),
                        "refunded_at": _iso(refunded),
                        "customer": {"id": f"C{customer_id}"},
                    },
                    refunded,
                    "return refunded",
                )
        if c % 5 == 0:
            hub_event += 1
            story.hubspot(
                [
                    {
                        "eventId": hub_event,
                        "subscriptionId": 1,
                        "portalId": 424242,
                        "appId": 1,
                        "occurredAt": int(now.timestamp() * 1000),
                        "subscriptionType": "contact.propertyChange",
                        "attemptNumber": 0,
                        "objectId": 80_000 + c,
                        "propertyName": "vip_status",
                        "propertyValue": "true",
                        "changeSource": "CRM_UI",
                    }
                ],
                "CRM sets VIP",
            )
        story.loyalty(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "topic": "customers/update",
                "created_at": _iso(now),
                "customer": {
                    "id": 10_000 + c,
                    "merchant_id": str(customer_id),
                    "email": email,
                    "points_approved": rng.randint(0, 900),
                    "points_pending": 0,
                    "points_spent": 0,
                    "loyalty_tier_membership": {
                        "manual": False,
                        "expires_at": None,
                        "loyalty_tier": {"id": 1, "name": "Bronze", "number": 1},
                    },
                },
            },
            "loyalty balance update",
        )

    # --- the faults every retailer's stack produces ------------------------------------------
    first_pos = next(s for s in story.samples if s.source == "pos")
    story.samples.append(
        Sample(
            "pos",
            "vendor retry of a delivered webhook",
            first_pos.body,
            first_pos.headers,
            "duplicate",
        )
    )
    story.shopify(
        "orders/paid",
        {"id": 1},
        "signed with the wrong secret",
        "rejected",
        secret="an-old-secret-nobody-rotated",  # noqa: S106 - the fault itself
    )
    story.hubspot(
        [{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 5, "occurredAt": 0}],
        "replayed 10 minutes late",
        "rejected",
        sent_at=now - timedelta(minutes=10),
    )
    raw = b"<order><id>77</id></order>"
    story.samples.append(
        Sample(
            "pos",
            "signed, but XML instead of JSON",
            raw,
            shopify.sign(_secret("pos").encode(), raw, topic="orders/paid", webhook_id="xml-1"),
            "quarantined",
        )
    )
    story.erp(
        "order.paid",
        {"order_id": "SO-BROKEN", "customer": {"id": "C1"}, "subtotal": "10.00"},
        now,
        "ERP event missing its currency",
        "quarantined",
    )
    return story.samples
