"""Which connector class serves which vendor name from the configuration."""

from __future__ import annotations

import importlib
from typing import cast

from handoff.connectors.base import Connector, SourceOptions

# vendor name (config) → "module:Class"; imported lazily so one vendor's import cost or failure
# never affects a deployment that does not use it.
CONNECTORS: dict[str, str] = {
    "shopify": "handoff.connectors.shopify:ShopifyConnector",
    "hubspot": "handoff.connectors.hubspot:HubSpotConnector",
    "loyaltylion": "handoff.connectors.loyaltylion:LoyaltyLionConnector",
    "standard": "handoff.connectors.standard:StandardConnector",
    "zendesk": "handoff.connectors.zendesk:ZendeskConnector",
    "quickbooks": "handoff.connectors.quickbooks:QuickBooksConnector",
    "hmac": "handoff.connectors.generic_hmac:GenericHmacConnector",
}


def build_connector(vendor: str, options: SourceOptions) -> Connector:
    try:
        target = CONNECTORS[vendor]
    except KeyError:
        raise ValueError(f"no connector for vendor {vendor!r}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cast(Connector, cls(options))
