"""Gorgias customers: attributes as the customer's integration data
(`PUT /api/customers/{id}/data`, HTTP Basic with the account email and API key). A customer
whose id is unknown is found by email (`GET /api/customers?email=`), and the id remembered."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx

from handoff.connectors.writers.base import (
    Delivery,
    VendorWriter,
    WriteResult,
    field_target,
    permanent,
    result_of,
    send,
)


class GorgiasWriter(VendorWriter):
    @property
    def base(self) -> str:
        return f"{self.base_url}/api/customers"

    @property
    def headers(self) -> dict[str, str]:
        basic = base64.b64encode(self.token.encode()).decode("ascii")  # "email:api_key"
        return {"Authorization": f"Basic {basic}"}

    def _one(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        if d.kind != "attribute":
            return permanent("Gorgias takes attributes")
        failure, customer_id, learned = self.locate(
            client,
            d,
            now,
            (self.base, {"email": d.email or ""}),
            ("data", "id"),
            "Gorgias customer",
        )
        if failure is not None:
            return failure
        target = field_target(self.fields, d.field, "data")
        value: Any = d.payload.get("value")
        call = send(
            client,
            "PUT",
            f"{self.base}/{customer_id}/data",
            json={"data": {target: value}},
            headers=self.headers,
        )
        return replace(result_of(call, now), external_id=learned)
