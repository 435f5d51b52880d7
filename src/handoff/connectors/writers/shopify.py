"""Shopify Admin GraphQL: customer attributes as metafields (`metafieldsSet` with
`compareDigest`) and tags (`tagsAdd` / `tagsRemove`).

The customer is the one whose id identity already knows for this destination, else the one
found by email (`customers(query: "email:…")`), whose id is then remembered. A metafield is
read first so the write can carry its `compareDigest`: if someone changed it in between,
Shopify refuses with STALE_OBJECT and the delivery is tried again against the new state.
Throttling is reported inside a 200 (`errors[THROTTLED]` + `extensions.cost`); the wait comes
from the cost the query needs and the restore rate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx

from handoff.connectors.writers.base import (
    Call,
    Delivery,
    Fields,
    VendorWriter,
    WriteResult,
    not_found,
    permanent,
    refused,
    result_of,
    send,
)
from handoff.delivery.policy import Outcome

API_VERSION = "2026-01"

FIND = "query($q: String!) { customers(first: 1, query: $q) { nodes { id email } } }"
SET = (
    "mutation($metafields: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $metafields) "
    "{ metafields { key namespace value compareDigest } userErrors { field message code } } }"
)
TAGS = "mutation($id: ID!, $tags: [String!]!) { %s(id: $id, tags: $tags) { node { id } userErrors { field message } } }"  # noqa: E501


def _read(namespace: str, key: str) -> str:
    return (
        "query($id: ID!) { customer(id: $id) { id tags "
        f"metafield(namespace: {json.dumps(namespace)}, key: {json.dumps(key)}) "
        "{ value compareDigest } } }"
    )


def metafield_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number_integer"
    return "single_line_text_field"


def metafield_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def gid(external_id: str) -> str:
    return (
        external_id if external_id.startswith("gid://") else f"gid://shopify/Customer/{external_id}"
    )


class ShopifyWriter(VendorWriter):
    def __init__(
        self,
        base_url: str,
        token: str,
        fields: Fields,
        *,
        verify: bool = False,
        restore_rate: float = 100.0,
    ) -> None:
        super().__init__(base_url, token, fields, verify=verify)
        self.restore_rate = restore_rate

    @property
    def url(self) -> str:
        return f"{self.base_url}/admin/api/{API_VERSION}/graphql.json"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self.token, "Content-Type": "application/json"}

    # --- one GraphQL exchange ---------------------------------------------------------------------

    def _gql(
        self, client: httpx.Client, query: str, variables: dict[str, Any], now: datetime
    ) -> tuple[WriteResult, Any]:
        call: Call = send(
            client,
            "POST",
            self.url,
            json={"query": query, "variables": variables},
            headers=self.headers,
        )
        result = result_of(call, now)
        body = call.json()
        if not result.ok or not isinstance(body, dict):
            return result, None
        status = ((body.get("extensions") or {}).get("cost") or {}).get("throttleStatus") or {}
        available = status.get("currentlyAvailable")
        if isinstance(available, int | float):
            result = replace(result, available=float(available))
        errors = body.get("errors") or []
        if errors:
            codes = {
                ((e.get("extensions") or {}).get("code")) for e in errors if isinstance(e, dict)
            }
            if "THROTTLED" in codes:
                cost = ((body.get("extensions") or {}).get("cost") or {}).get(
                    "requestedQueryCost", 10
                )
                wait = max(1.0, (float(cost) - float(available or 0)) / self.restore_rate)
                return replace(
                    result, outcome=Outcome.THROTTLED, error="Throttled", retry_after=wait
                ), None
            return refused(
                result, f"GraphQL errors: {sorted(map(str, codes))}", Outcome.PERMANENT
            ), None
        return result, body.get("data") or {}

    # --- a delivery -------------------------------------------------------------------------------

    def _customer(
        self, client: httpx.Client, d: Delivery, now: datetime
    ) -> tuple[WriteResult | None, str | None, str | None]:
        """(failure, gid, learned id)."""
        if d.external_id:
            return None, gid(d.external_id), None
        email = d.email
        if not email:
            return not_found("no Shopify id and no email to find the customer by"), None, None
        result, data = self._gql(client, FIND, {"q": f"email:{email}"}, now)
        if data is None:
            return result, None, None
        nodes = ((data.get("customers") or {}).get("nodes")) or []
        if not nodes:
            return not_found("no Shopify customer with this email", result.latency_ms), None, None
        found = str(nodes[0]["id"])
        return None, found, found.rsplit("/", 1)[-1]

    def _one(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        if d.kind != "attribute":
            return permanent(f"Shopify takes attributes, not {d.kind}")
        failure, owner, learned = self._customer(client, d, now)
        if failure is not None or owner is None:
            assert failure is not None
            return failure
        spec = self.fields.get(d.field)
        target = {"metafield": spec} if isinstance(spec, str) else dict(spec or {})
        value = d.payload.get("value")
        last: WriteResult | None = None
        if "metafield" in target:
            namespace, _, key = target["metafield"].rpartition(".")
            namespace = namespace or "custom"
            last, data = self._gql(client, _read(namespace, key), {"id": owner}, now)
            if data is None:
                return replace(last, external_id=learned)
            customer = data.get("customer")
            if customer is None:
                return not_found("the Shopify customer no longer exists", last.latency_ms)
            current = customer.get("metafield")
            wanted = metafield_value(value)
            if current is None or current.get("value") != wanted:
                item = {
                    "ownerId": owner,
                    "namespace": namespace,
                    "key": key,
                    "type": target.get("type") or metafield_type(value),
                    "value": wanted,
                    "compareDigest": current.get("compareDigest") if current else None,
                }
                last, data = self._gql(client, SET, {"metafields": [item]}, now)
                if data is None:
                    return replace(last, external_id=learned)
                errors = ((data.get("metafieldsSet") or {}).get("userErrors")) or []
                if errors:
                    codes = sorted({str(e.get("code")) for e in errors})
                    stale = codes == ["STALE_OBJECT"]
                    return replace(
                        refused(
                            last,
                            f"metafieldsSet refused: {codes}",
                            Outcome.RETRY if stale else Outcome.PERMANENT,
                        ),
                        external_id=learned,
                    )
        if "tag" in target:
            op = "tagsAdd" if value else "tagsRemove"
            last, data = self._gql(client, TAGS % op, {"id": owner, "tags": [target["tag"]]}, now)
            if data is None:
                return replace(last, external_id=learned)
            errors = ((data.get(op) or {}).get("userErrors")) or []
            if errors:
                return replace(
                    refused(last, f"{op} refused: {errors[0].get('message')}"), external_id=learned
                )
        if last is None:
            return permanent(f"no Shopify mapping for {d.field}")
        if self.verify:
            last = self._verify(client, owner, target, value, now, last)
        return replace(last, external_id=learned)

    def _verify(
        self,
        client: httpx.Client,
        owner: str,
        target: Mapping[str, str],
        value: Any,
        now: datetime,
        last: WriteResult,
    ) -> WriteResult:
        namespace, _, key = target.get("metafield", "custom.x").rpartition(".")
        check, data = self._gql(client, _read(namespace or "custom", key), {"id": owner}, now)
        if data is None:
            return check
        customer = data.get("customer") or {}
        problems = []
        if "metafield" in target:
            got = (customer.get("metafield") or {}).get("value")
            if got != metafield_value(value):
                problems.append(f"metafield reads {got!r}")
        if "tag" in target:
            has = target["tag"].lower() in {str(t).lower() for t in customer.get("tags") or []}
            if has != bool(value):
                problems.append(f"tag {target['tag']!r} {'present' if has else 'absent'}")
        if problems:
            return refused(last, "read-back differs: " + "; ".join(problems))
        return last
