"""Each simulated system's own export, in contracts/reconcile.md's formats (faults included).

The rows come from the look-alike APIs' state, so an export taken after a live run shows what
handoff wrote too; before any run (or from `Simulation.write`) it shows the scenario's state
with every injected fault. Files (CSV, header row, `\\n` line ends, sorted by id, amounts as
decimal strings, times as ISO 8601 `Z`, booleans `true`/`false`):

| file | from | reconcile input |
|---|---|---|
| `orders.csv`, `refunds.csv` | ERP | `orders`, `refunds` |
| `loyalty_events.csv`, `loyalty_members.csv` | LoyaltyLion | `loyalty_events`, `loyalty_members` |
| `crm_contacts.csv` | HubSpot | `crm_contacts` |
| `pos_customers.csv` | Shopify (VIP tag) | `pos_customers` |
| `helpdesk_users.csv` | Zendesk (`vip` user field) | `helpdesk_users` |
| `comms_profiles.csv` | Klaviyo (`is_vip` property) | `comms_profiles` |

Extra columns (reconcile ignores unknown ones) carry what a look-alike knows beyond the
contract, e.g. `points_pending` and `loyaltylion_id` on members.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from handoff.sim.truth import csv_text, write_text

if TYPE_CHECKING:
    from handoff.sim.vendors.erp import ErpApi
    from handoff.sim.vendors.hubspot import HubSpotApi
    from handoff.sim.vendors.klaviyo import KlaviyoApi
    from handoff.sim.vendors.loyaltylion import LoyaltyLionApi
    from handoff.sim.vendors.shopify import ShopifyApi
    from handoff.sim.vendors.zendesk import ZendeskApi

__all__ = ["csv_text", "write_exports"]

ORDERS_COLUMNS = (
    "order_id",
    "customer_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "zip",
    "channel",
    "store_id",
    "currency",
    "subtotal",
    "discount",
    "tax",
    "shipping",
    "gift_card",
    "total",
    "status",
    "placed_at",
    "paid_at",
    "fulfilled_at",
    "cancelled_at",
)
REFUNDS_COLUMNS = ("refund_id", "order_id", "refunded_at", "amount", "currency")
LOYALTY_EVENTS_COLUMNS = (
    "event_id",
    "member_id",
    "kind",
    "points",
    "occurred_at",
    "order_id",
    "email",
    "reason",
    "vests_at",
)
LOYALTY_MEMBERS_COLUMNS = (
    "member_id",
    "points_balance",
    "points_pending",
    "email",
    "phone",
    "first_name",
    "last_name",
    "zip",
    "tier",
    "customer_id",
    "loyaltylion_id",
    "created_at",
)
CRM_CONTACTS_COLUMNS = (
    "contact_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "zip",
    "is_vip",
    "tier",
    "lifetime_spend",
    "points_balance",
    "updated_at",
)
POS_CUSTOMERS_COLUMNS = ("id", "email", "phone", "is_vip", "tags")
HELPDESK_USERS_COLUMNS = ("id", "email", "phone", "is_vip", "name", "tier")
COMMS_PROFILES_COLUMNS = ("id", "email", "phone", "is_vip", "tier")


def write_exports(
    out_dir: Path,
    *,
    erp: ErpApi,
    loyalty: LoyaltyLionApi,
    crm: HubSpotApi,
    shop: ShopifyApi,
    helpdesk: ZendeskApi,
    comms: KlaviyoApi,
    as_of: datetime | None = None,
) -> list[Path]:
    """Write every system's export under `out_dir`; `as_of` defaults to the clock's now."""
    files = {
        "orders.csv": csv_text(ORDERS_COLUMNS, erp.order_rows(as_of)),
        "refunds.csv": csv_text(REFUNDS_COLUMNS, erp.refund_rows(as_of)),
        "loyalty_events.csv": csv_text(LOYALTY_EVENTS_COLUMNS, loyalty.event_rows(as_of)),
        "loyalty_members.csv": csv_text(LOYALTY_MEMBERS_COLUMNS, loyalty.member_rows(as_of)),
        "crm_contacts.csv": csv_text(CRM_CONTACTS_COLUMNS, crm.export_rows()),
        "pos_customers.csv": csv_text(POS_CUSTOMERS_COLUMNS, shop.export_rows()),
        "helpdesk_users.csv": csv_text(HELPDESK_USERS_COLUMNS, helpdesk.export_rows()),
        "comms_profiles.csv": csv_text(COMMS_PROFILES_COLUMNS, comms.export_rows()),
    }
    written = []
    for name, text in files.items():
        path = out_dir / name
        write_text(path, text)
        written.append(path)
    return written
