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
    not_found,
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

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _one(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        if d.kind == "profile":
            return self._relay(client, d, now)
        if d.kind != "attribute":
            return permanent("Zendesk takes no points")
        user_id, learned = d.external_id, None
        if not user_id:
            if not d.email:
                return not_found("no Zendesk id and no email to find the user by")
            call = send(
                client,
                "GET",
                f"{self.base}/search.json",
                params={"query": f"email:{d.email}"},
                headers=self.headers,
            )
            found = result_of(call, now)
            if not found.ok:
                return found
            users = (call.json() or {}).get("users") or []
            if not users:
                return not_found("no Zendesk user with this email", found.latency_ms)
            user_id = learned = str(users[0]["id"])
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
