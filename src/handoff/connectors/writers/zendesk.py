"""Zendesk Support users: attributes as `user_fields` (PUT /api/v2/users/{id}); the profile relay
through `users/create_or_update` (keyed on email). A user whose id is unknown is found by
email (`users/search`) and the id remembered."""

from __future__ import annotations

from collections.abc import Mapping
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
    refused,
    result_of,
    send,
)
from handoff.delivery.policy import Outcome


class ZendeskWriter(VendorWriter):
    @property
    def base(self) -> str:
        return f"{self.base_url}/api/v2/users"

    def _one(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        if d.kind == "profile":
            return self._relay(client, d, now)
        if d.kind != "attribute":
            return permanent("Zendesk takes no points")
        failure, user_id, learned = self.locate(
            client,
            d,
            now,
            (f"{self.base}/search.json", {"query": f"email:{d.email}"}),
            ("users", "id"),
            "Zendesk user",
        )
        if failure is not None:
            return failure
        target = field_target(self.fields, d.field, "user_field")
        value = d.payload.get("value")
        call = send(
            client,
            "PUT",
            f"{self.base}/{user_id}.json",
            json={"user": {"user_fields": {target: value}}},
            headers=self.headers,
        )
        result = replace(result_of(call, now), external_id=learned)
        if not result.ok:
            return result
        record = (call.json() or {}).get("user") or {}
        if self.verify:
            call = send(client, "GET", f"{self.base}/{user_id}.json", headers=self.headers)
            check = result_of(call, now)
            if not check.ok:
                return replace(check, external_id=learned)
            record = (call.json() or {}).get("user") or {}
        return self._check(result, record, target, value)

    @staticmethod
    def _check(
        result: WriteResult, record: Mapping[str, Any], target: str, value: Any
    ) -> WriteResult:
        fields = record.get("user_fields")
        if not isinstance(fields, dict) or target not in fields:
            return refused(result, f"Zendesk has no user field {target!r}", Outcome.PERMANENT)
        if fields[target] != value:
            return refused(result, f"Zendesk holds {fields[target]!r} for {target}")
        return result

    def _relay(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        fields = d.payload.get("fields") or {}
        email = d.email
        if not email:
            return permanent("no email to relay")
        name = " ".join(str(fields.get(k) or "") for k in ("first_name", "last_name")).strip()
        user: dict[str, Any] = {"email": email, "name": name or email}
        if fields.get("phone"):
            user["phone"] = fields["phone"]
        call = send(
            client,
            "POST",
            f"{self.base}/create_or_update.json",
            json={"user": user},
            headers=self.headers,
        )
        result = result_of(call, now)
        record = (call.json() or {}).get("user") or {}
        return (
            replace(result, external_id=str(record["id"]))
            if result.ok and "id" in record
            else result
        )
