"""HubSpot CRM contacts: properties written in batches of up to 100.

Contacts whose HubSpot id identity knows go through `batch/update`; the others through
`batch/upsert` keyed on email, which creates the contact where it is missing (the profile relay)
and tells us its id, which is remembered. `batch/update` is all-or-nothing in HubSpot: when one
id in a batch is gone the batch fails, so the batch is retried one contact at a time (PATCH)
to find the one at fault without holding the others back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx

from handoff.connectors.writers.base import (
    Delivery,
    WriteResult,
    field_target,
    not_found,
    permanent,
    refused,
    result_of,
    send,
)
from handoff.delivery.policy import Outcome

BATCH = 100
PROFILE_PROPERTIES = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "phone": "phone",
    "zip": "zip",
}


def property_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class HubSpotWriter:
    batch_size = BATCH

    def __init__(
        self,
        base_url: str,
        token: str,
        fields: Mapping[str, str | Mapping[str, str]],
        *,
        verify: bool = False,
    ) -> None:
        self.base = f"{base_url.rstrip('/')}/crm/v3/objects/contacts"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.fields = fields
        self.verify = verify

    def properties(self, d: Delivery) -> dict[str, str]:
        if d.kind == "attribute":
            target = field_target(self.fields, d.field, "property")
            return {target: property_value(d.payload.get("value"))}
        fields = d.payload.get("fields")
        out = {}
        for name, prop in PROFILE_PROPERTIES.items():
            value = fields.get(name) if isinstance(fields, dict) else None
            if value is None and d.recipient is not None:
                value = getattr(d.recipient, name, None)
            if value not in (None, ""):
                out[prop] = property_value(value)
        return out

    def write(
        self, client: httpx.Client, deliveries: Sequence[Delivery], now: datetime
    ) -> list[WriteResult]:
        results: dict[int, WriteResult] = {}
        by_id = [d for d in deliveries if d.external_id]
        by_email = [d for d in deliveries if not d.external_id and d.email]
        for d in deliveries:
            if d.kind == "points":
                results[d.id] = permanent("HubSpot takes no points")
            elif not d.external_id and not d.email:
                results[d.id] = not_found("no HubSpot id and no email for the contact")
        by_id = [d for d in by_id if d.id not in results]
        by_email = [d for d in by_email if d.id not in results]
        if by_id:
            results |= self._update(client, by_id, now)
        if by_email:
            results |= self._upsert(client, by_email, now)
        return [results[d.id] for d in deliveries]

    def _update(
        self, client: httpx.Client, ds: Sequence[Delivery], now: datetime
    ) -> dict[int, WriteResult]:
        inputs = [{"id": d.external_id, "properties": self.properties(d)} for d in ds]
        call = send(
            client,
            "POST",
            f"{self.base}/batch/update",
            json={"inputs": inputs},
            headers=self.headers,
        )
        result = result_of(call, now)
        if result.outcome is Outcome.PERMANENT and len(ds) > 1:
            return {d.id: self._patch(client, d, now) for d in ds}
        if not result.ok:
            return {d.id: result for d in ds}
        body = call.json() or {}
        seen = {str(r.get("id")): r for r in body.get("results") or [] if isinstance(r, dict)}
        return {
            d.id: self._confirmed(client, d, seen.get(str(d.external_id)), result, now) for d in ds
        }

    def _patch(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        call = send(
            client,
            "PATCH",
            f"{self.base}/{d.external_id}",
            json={"properties": self.properties(d)},
            headers=self.headers,
        )
        result = result_of(call, now)
        return self._confirmed(client, d, call.json(), result, now) if result.ok else result

    def _upsert(
        self, client: httpx.Client, ds: Sequence[Delivery], now: datetime
    ) -> dict[int, WriteResult]:
        inputs = []
        for d in ds:
            email = d.email or ""
            inputs.append(
                {
                    "id": email,
                    "idProperty": "email",
                    "properties": self.properties(d) | {"email": email},
                }
            )
        call = send(
            client,
            "POST",
            f"{self.base}/batch/upsert",
            json={"inputs": inputs},
            headers=self.headers,
        )
        result = result_of(call, now)
        if not result.ok:
            return {d.id: result for d in ds}
        body = call.json() or {}
        seen = {
            str((r.get("properties") or {}).get("email") or "").lower(): r
            for r in body.get("results") or []
            if isinstance(r, dict)
        }
        out = {}
        for d in ds:
            found = seen.get((d.email or "").lower())
            confirmed = self._confirmed(client, d, found, result, now)
            out[d.id] = replace(confirmed, external_id=str(found["id"])) if found else confirmed
        return out

    def _confirmed(
        self,
        client: httpx.Client,
        d: Delivery,
        record: Any,
        result: WriteResult,
        now: datetime,
    ) -> WriteResult:
        if not isinstance(record, dict):
            return refused(result, "HubSpot did not confirm this contact")
        if self.verify:
            call = send(
                client,
                "GET",
                f"{self.base}/{record.get('id')}",
                params={"properties": ",".join(self.properties(d))},
                headers=self.headers,
            )
            check = result_of(call, now)
            if not check.ok:
                return check
            record = call.json() or {}
        props = record.get("properties") or {}
        wrong = [k for k, v in self.properties(d).items() if k in props and props[k] != v]
        if wrong:
            return refused(result, f"HubSpot holds other values for {sorted(wrong)}")
        return result
