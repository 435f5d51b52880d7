"""LoyaltyLion points: `POST /v2/customers/{merchant_id}/points` to add and `/remove_points` to
remove, each with a reason.

LoyaltyLion has no idempotency field, so the adjustment's key travels in the reason
(`… [hk:KEY]`) and handoff keeps a ledger of adjustments it has sent: when an earlier attempt may
have reached LoyaltyLion (a timeout, a worker killed mid-request), the member's transactions are
read first and an adjustment already there is confirmed instead of applied twice.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import httpx

from handoff.connectors.writers.base import (
    Delivery,
    VendorWriter,
    WriteResult,
    permanent,
    result_of,
    send,
)
from handoff.delivery.policy import Outcome

MAX_POINTS = 1_000_000


def marker(key: str) -> str:
    return f"[hk:{key}]"


class LoyaltyLionWriter(VendorWriter):
    needs_sent_ledger = True

    @property
    def base(self) -> str:
        return f"{self.base_url}/v2"

    def _one(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        if d.kind != "points":
            return permanent("LoyaltyLion takes points adjustments")
        delta = int(d.payload.get("delta") or 0)
        if delta == 0:
            return WriteResult(Outcome.DELIVERED, response="nothing to adjust")
        if abs(delta) > MAX_POINTS:
            return permanent("adjustment over 1,000,000 points")
        failure, member, learned = self.locate(
            client,
            d,
            now,
            (f"{self.base}/customers", {"email": d.email or ""}),
            ("customers", "merchant_id"),
            "LoyaltyLion member",
        )
        if failure is not None:
            return failure
        if d.sent_before:
            call = send(
                client,
                "GET",
                f"{self.base}/transactions",
                params={"customer_id": member},
                headers=self.headers,
            )
            seen = result_of(call, now)
            if not seen.ok:
                return replace(seen, external_id=learned)
            rows = (call.json() or {}).get("transactions") or []
            if any(marker(d.idem_key) in str(t.get("reason") or "") for t in rows):
                return replace(
                    seen, response="already applied (found by its key)", external_id=learned
                )
        path = "points" if delta > 0 else "remove_points"
        reason = f"{d.payload.get('reason') or 'adjustment'} {marker(d.idem_key)}"
        call = send(
            client,
            "POST",
            f"{self.base}/customers/{member}/{path}",
            json={"points": abs(delta), "reason": reason},
            headers=self.headers,
        )
        return replace(result_of(call, now), external_id=learned)
