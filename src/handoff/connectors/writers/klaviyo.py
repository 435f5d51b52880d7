"""Klaviyo profiles through `POST /api/profile-import` (an upsert: matched by id or email, a
property set to null is cleared, one left out is kept). The profile id in the answer is
remembered. Requests carry the `revision` header Klaviyo requires."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx

from handoff.connectors.writers.base import (
    Delivery,
    VendorWriter,
    WriteResult,
    field_target,
    not_found,
    permanent,
    refused,
    result_of,
    send,
)

REVISION = "2026-07-15"
PROFILE_ATTRIBUTES = {
    "email": "email",
    "phone": "phone_number",
    "first_name": "first_name",
    "last_name": "last_name",
}


class KlaviyoWriter(VendorWriter):
    @property
    def base(self) -> str:
        return f"{self.base_url}/api"

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Klaviyo-API-Key {self.token}",
            "revision": REVISION,
            "accept": "application/vnd.api+json",
        }

    def attributes(self, d: Delivery) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if d.email:
            attrs["email"] = d.email
        if d.kind == "attribute":
            target = field_target(self.fields, d.field, "property")
            attrs["properties"] = {target: d.payload.get("value")}
        else:
            fields = d.payload.get("fields") or {}
            for name, attr in PROFILE_ATTRIBUTES.items():
                if fields.get(name) not in (None, ""):
                    attrs[attr] = fields[name]
        return attrs

    def _one(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        if d.kind == "points":
            return permanent("Klaviyo takes no points")
        if not d.external_id and not d.email:
            return not_found("no Klaviyo id and no email for the profile")
        data: dict[str, Any] = {"type": "profile", "attributes": self.attributes(d)}
        if d.external_id:
            data["id"] = d.external_id
        call = send(
            client, "POST", f"{self.base}/profile-import", json={"data": data}, headers=self.headers
        )
        result = result_of(call, now)
        if not result.ok:
            return result
        record = (call.json() or {}).get("data") or {}
        profile_id = record.get("id")
        if not profile_id:
            return refused(result, "Klaviyo did not confirm the profile")
        learned = None if d.external_id == profile_id else str(profile_id)
        if self.verify:
            call = send(client, "GET", f"{self.base}/profiles/{profile_id}", headers=self.headers)
            check = result_of(call, now)
            if not check.ok:
                return replace(check, external_id=learned)
            record = (call.json() or {}).get("data") or {}
        if d.kind == "attribute":
            target = field_target(self.fields, d.field, "property")
            props = (record.get("attributes") or {}).get("properties") or {}
            if props.get(target) != d.payload.get("value"):
                return replace(
                    refused(result, f"Klaviyo holds {props.get(target)!r} for {target}"),
                    external_id=learned,
                )
        return replace(result, external_id=learned)
