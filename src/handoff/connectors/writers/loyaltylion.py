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
    not_found,
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

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _member(
        self, client: httpx.Client, d: Delivery, now: datetime
    ) -> tuple[WriteResult | None, str | None, str | None]:
        if d.external_id:
            return None, d.external_id, None
        if not d.email:
            return not_found("no LoyaltyLion id and no email to find the member by"), None, None
        call = send(
            client, "GET", f"{self.base}/customers", params={"email": d.email}, headers=self.headers
        )
        result = result_of(call, now)
        if not result.ok:
            return result, None, None
        found = (call.json() or {}).get("customers") or []
        if not found:
            return not_found("no LoyaltyLion member with this email", result.latency_ms), None, None
        merchant_id = str(found[0].get("merchant_id"))
        return None, merchant_id, merchant_id

    def _one(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        if d.kind != "points":
            return permanent("LoyaltyLion takes points adjustments")
        delta = int(d.payload.get("delta") or 0)
        if delta == 0:
            return WriteResult(Outcome.DELIVERED, response="nothing to adjust")
        if abs(delta) > MAX_POINTS:
            return permanent("adjustment over 1,000,000 points")
        failure, member, learned = self._member(client, d, now)
        if failure is not None or member is None:
            assert failure is not None
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
