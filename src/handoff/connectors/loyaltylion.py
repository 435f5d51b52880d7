"""LoyaltyLion: signed webhooks about loyalty members — the loyalty platform's own view.

Signature (vendors.md §1; developers.loyaltylion.com webhooks overview):
`x-loyaltylion-hmac-sha256` = base64(HMAC-SHA256(OAuth client secret or site secret, raw body)).
No signed timestamp, so no freshness check. Delivery is at-least-once; the body `id` names the
delivery and is the dedupe key. No header is kept: id, topic and created_at are all in the signed
body, and the signature is left out because, unsigned by time, it would verify forever.

Body: `{"id", "topic", "created_at", …}`. `customers/update` carries `customer` at the top level;
program events (`program_events/…`) carry theirs under `payload.properties`.

Mapping:
- `customers/update` → customer.attributes.changed with `loyalty_points_approved`,
  `loyalty_points_pending` and `tier` (the tier name, None without a membership), versioned by
  the customer's `updated_at`.
- any program event that carries a `transaction` (today `program_events/customer.points_earned`)
  → loyalty.points.recorded. `delta` = transaction `points_approved + points_pending` (the total
  the transaction added or removed; a pending→approved move nets to 0). `balance` / `pending` are
  the customer's `points_approved` / `points_pending` — LoyaltyLion sends the customer as it is
  when the webhook goes out (points_earned is delayed 5 min), not as of the transaction.
  `reason` is the activity's rule name (e.g. "$purchase") for activity transactions, else the
  transaction resource ("adjustment", "claimed_reward", "expiry"). `order_ref` is the activity's
  `merchant_id` when the rule is "$purchase" (the store's order id).
- `program_events/customer.tier_upgraded` / `tier_downgraded` → customer.attributes.changed
  with `tier`, read from the customer's tier membership.
- other topics → NothingToMap.

Customer ref: `system` = the configured source, `external_id` = the customer's `merchant_id`
(the store's customer id) if present, else LoyaltyLion's own `id`; PointsBody.member_id is the
same value so ledger and identity join on one key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ValidationError

from handoff.connectors.base import (
    ConnectorFactory,
    Inbound,
    NothingToMap,
    PayloadError,
    SourceOptions,
    StoredReceipt,
    b64,
    hmac_digest,
    invalid_event_reason,
    optional_time,
    parse_json_object,
    required_id,
    verify_body_hmac,
)
from handoff.domain.events import (
    AttributesBody,
    CustomerRef,
    EventDraft,
    EventType,
    PointsBody,
)

SIGNATURE_HEADER = "x-loyaltylion-hmac-sha256"

CUSTOMERS_UPDATE = "customers/update"
PROGRAM_EVENT_PREFIX = "program_events/"
TIER_TOPICS = frozenset({"customer.tier_upgraded", "customer.tier_downgraded"})
PURCHASE_RULE = "$purchase"


def sign(secret: bytes, body: bytes) -> dict[str, str]:
    """The headers LoyaltyLion would send with `body` (for tests, the demo and the simulator)."""
    return {SIGNATURE_HEADER: b64(hmac_digest(secret, body))}


class LoyaltyLionConnector:
    """LoyaltyLion webhooks → the loyalty platform's balances, tiers and point transactions."""

    vendor: ClassVar[str] = "loyaltylion"
    kept_headers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        # LoyaltyLion keys a member by the store's own customer id (`merchant_id`): on a Shopify
        # store that *is* the Shopify customer id, so the ids can be recorded under that system
        # (`[sources.NAME.options] merchant_id_system = "shopify"`) and identity knows the two
        # are one customer without matching anything.
        system = options.extra.get("merchant_id_system")
        if system is not None and (not isinstance(system, str) or not system.strip()):
            raise ValueError(
                "options.merchant_id_system must be the name of a system, e.g. 'shopify'"
            )
        self.merchant_system: str | None = system.strip() if system else None

    # --- gateway side ------------------------------------------------------------------------

    def verify(self, request: Inbound, secrets: Sequence[bytes]) -> None:
        verify_body_hmac(request, secrets, SIGNATURE_HEADER)

    def delivery_id(self, request: Inbound) -> str | None:
        try:
            data = self.parse(request.body)
        except PayloadError:
            return None
        value = data.get("id")
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None

    def parse(self, body: bytes) -> dict[str, Any]:
        data = parse_json_object(body)
        topic = data.get("topic")
        if topic is None:
            raise PayloadError("body has no topic")
        if not isinstance(topic, str) or not topic.strip():
            raise PayloadError("topic is not a non-empty string")
        return data

    # --- processor side ----------------------------------------------------------------------

    def map(self, receipt: StoredReceipt) -> list[EventDraft]:
        data = self.parse(receipt.body)
        topic = data["topic"].strip()
        event = topic.removeprefix(PROGRAM_EVENT_PREFIX)
        try:
            if topic == CUSTOMERS_UPDATE:
                return [self._customer_update(data, receipt)]
            if topic.startswith(PROGRAM_EVENT_PREFIX) or event in TIER_TOPICS:
                properties = _program_properties(data)
                if properties.get("transaction") is not None:
                    return [self._points(data, properties, receipt)]
                if event in TIER_TOPICS:
                    return [self._tier_change(data, properties, receipt)]
        except ValidationError as exc:
            raise PayloadError(invalid_event_reason(exc)) from exc
        raise NothingToMap(f"topic {topic[:80]} is not mapped")

    def _customer_update(self, data: dict[str, Any], receipt: StoredReceipt) -> EventDraft:
        event_id = required_id(data.get("id"), "id")
        customer = _object(data.get("customer"), "customer")
        updated_raw = customer.get("updated_at")
        updated_at = optional_time(updated_raw, "customer.updated_at")
        created_at = optional_time(data.get("created_at"), "created_at")
        version = updated_raw if updated_at is not None else data.get("created_at")
        attributes: dict[str, str | int | bool | None] = {
            "loyalty_points_approved": _points(
                customer.get("points_approved"), "customer.points_approved"
            ),
            "loyalty_points_pending": _points(
                customer.get("points_pending"), "customer.points_pending"
            ),
            "tier": _tier_name(customer),
        }
        return EventDraft(
            source_event_id=event_id,
            type=EventType.ATTRIBUTES_CHANGED,
            occurred_at=updated_at or created_at or receipt.received_at,
            customer=_customer_ref(receipt.source, customer, "customer", self.merchant_system),
            body=AttributesBody(
                attributes=attributes,
                version=version if isinstance(version, str) else None,
                updated_at=updated_at or created_at,
            ),
        )

    def _points(
        self, data: dict[str, Any], properties: dict[str, Any], receipt: StoredReceipt
    ) -> EventDraft:
        event_id = required_id(data.get("id"), "id")
        where = "payload.properties"
        customer = _object(properties.get("customer"), f"{where}.customer")
        transaction = _object(properties.get("transaction"), f"{where}.transaction")
        approved = transaction.get("points_approved")
        pending = transaction.get("points_pending")
        if approved is None and pending is None:
            raise PayloadError(
                f"{where}.transaction has neither points_approved nor points_pending"
            )
        delta = _points(approved, f"{where}.transaction.points_approved", default=0) + _points(
            pending, f"{where}.transaction.points_pending", default=0
        )
        reason, order_ref = _reason(transaction, f"{where}.transaction")
        ref = _customer_ref(receipt.source, customer, f"{where}.customer", self.merchant_system)
        occurred = (
            optional_time(transaction.get("created_at"), f"{where}.transaction.created_at")
            or optional_time(data.get("created_at"), "created_at")
            or receipt.received_at
        )
        return EventDraft(
            source_event_id=event_id,
            type=EventType.POINTS_RECORDED,
            occurred_at=occurred,
            customer=ref,
            body=PointsBody(
                member_id=_external_id(customer, f"{where}.customer"),
                delta=delta,
                balance=_optional_points(
                    customer.get("points_approved"), f"{where}.customer.points_approved"
                ),
                pending=_optional_points(
                    customer.get("points_pending"), f"{where}.customer.points_pending"
                ),
                reason=reason,
                order_ref=order_ref,
                tier=_tier_name(customer),
            ),
        )

    def _tier_change(
        self, data: dict[str, Any], properties: dict[str, Any], receipt: StoredReceipt
    ) -> EventDraft:
        event_id = required_id(data.get("id"), "id")
        customer = _object(properties.get("customer"), "payload.properties.customer")
        created_raw = data.get("created_at")
        created_at = optional_time(created_raw, "created_at")
        return EventDraft(
            source_event_id=event_id,
            type=EventType.ATTRIBUTES_CHANGED,
            occurred_at=created_at or receipt.received_at,
            customer=_customer_ref(
                receipt.source, customer, "payload.properties.customer", self.merchant_system
            ),
            body=AttributesBody(
                attributes={"tier": _tier_name(customer)},
                version=created_raw if created_at is not None else None,
                updated_at=created_at,
            ),
        )


_factory_check: ConnectorFactory = LoyaltyLionConnector  # static check against the protocol


# --- helpers -----------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        raise PayloadError(f"{where} is missing")
    if not isinstance(value, dict):
        raise PayloadError(f"{where} is not an object")
    return value


def _program_properties(data: dict[str, Any]) -> dict[str, Any]:
    payload = _object(data.get("payload"), "payload")
    return _object(payload.get("properties"), "payload.properties")


def _optional_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(f"{where} is not a string")


def _points(value: Any, where: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if value is None:
        raise PayloadError(f"{where} is missing")
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 10**15:
        raise PayloadError(f"{where} is not an integer")
    return value


def _optional_points(value: Any, where: str) -> int | None:
    return None if value is None else _points(value, where)


def _tier_name(customer: dict[str, Any]) -> str | None:
    membership = customer.get("loyalty_tier_membership")
    if membership is None:
        return None
    membership = _object(membership, "customer.loyalty_tier_membership")
    tier = membership.get("loyalty_tier")
    if tier is None:
        return None
    tier = _object(tier, "customer.loyalty_tier_membership.loyalty_tier")
    return _optional_str(tier.get("name"), "customer.loyalty_tier_membership.loyalty_tier.name")


def _external_id(customer: dict[str, Any], where: str) -> str:
    """The store's customer id when LoyaltyLion knows it, else LoyaltyLion's own id."""
    merchant_id = _optional_str(customer.get("merchant_id"), f"{where}.merchant_id")
    if merchant_id is not None:
        return merchant_id
    if customer.get("id") is None:
        raise PayloadError(f"{where} has neither merchant_id nor id")
    return required_id(customer["id"], f"{where}.id")


def _customer_ref(
    system: str, customer: dict[str, Any], where: str, merchant_system: str | None = None
) -> CustomerRef:
    properties = customer.get("properties")
    names = properties if isinstance(properties, dict) else {}
    has_merchant_id = customer.get("merchant_id") not in (None, "")
    return CustomerRef(
        system=merchant_system if merchant_system and has_merchant_id else system,
        external_id=_external_id(customer, where),
        email=_optional_str(customer.get("email"), f"{where}.email"),
        first_name=_optional_str(names.get("first_name"), f"{where}.properties.first_name"),
        last_name=_optional_str(names.get("last_name"), f"{where}.properties.last_name"),
    )


def _reason(transaction: dict[str, Any], where: str) -> tuple[str | None, str | None]:
    """(reason, order reference) from a transaction's resource and its activity rule."""
    resource = _optional_str(transaction.get("resource"), f"{where}.resource")
    activity = transaction.get("activity")
    if resource == "activity" and isinstance(activity, dict):
        rule = activity.get("rule")
        rule_name = (
            _optional_str(rule.get("name"), f"{where}.activity.rule.name")
            if isinstance(rule, dict)
            else None
        )
        order_ref = None
        if rule_name == PURCHASE_RULE:
            order_ref = _optional_str(activity.get("merchant_id"), f"{where}.activity.merchant_id")
        return rule_name or resource, order_ref
    return resource, None
