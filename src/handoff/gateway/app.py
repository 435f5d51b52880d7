"""`POST /hooks/{source}`: verify, store durably, acknowledge fast.

The order of checks is the order of cost: unknown source (404), size (413), signature (401),
then the durable write. Nothing that passed the signature check is ever dropped: a body the
connector cannot parse is stored as quarantined and still acknowledged, so the vendor stops
retrying and an operator can fix the mapping and retry it.
"""

from __future__ import annotations

import hashlib
import time

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from handoff import logs
from handoff.connectors.base import Inbound, PayloadError, SignatureError
from handoff.gateway.committer import GroupCommitter, StoreUnavailable
from handoff.hub import Hub
from handoff.monitor import metrics
from handoff.store.receipts import NewReceipt

log = logs.get(__name__)


class BodyTooLarge(Exception):
    pass


def _json(
    status: int, payload: dict[str, object], headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class Gateway:
    def __init__(self, hub: Hub, committer: GroupCommitter) -> None:
        self.hub = hub
        self.committer = committer
        self.body_limit = hub.settings.config.gateway.body_limit_bytes

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["source"]
        source = self.hub.sources.get(name)
        if source is None:
            metrics.UNKNOWN_SOURCE.inc()
            return _json(404, {"error": "unknown_source", "detail": f"no source named {name!r}"})
        retry = {"Retry-After": "30"}
        transient = source.config.transient_status
        if not source.secrets:
            metrics.WEBHOOKS.labels(name, "unconfigured").inc()
            log.error(
                "webhook for a source without a secret",
                source=name,
                secret_env=source.config.secret_env,
            )
            return _json(
                transient,
                {"error": "source_not_configured", "detail": "the source's secret is not set"},
                retry,
            )
        try:
            body = await _read_body(request, self.body_limit)
        except BodyTooLarge:
            metrics.WEBHOOKS.labels(name, "too_large").inc()
            return _json(413, {"error": "body_too_large", "limit_bytes": self.body_limit})
        except ClientDisconnect:
            return Response(status_code=400)

        inbound = Inbound(
            method=request.method,
            url=str(request.url),
            headers={
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in request.scope["headers"]
            },
            body=body,
            received_at=self.hub.clock.now(),
        )
        connector = source.connector
        try:
            connector.verify(inbound, source.secrets)
        except SignatureError as exc:
            metrics.WEBHOOKS.labels(name, "rejected_signature").inc()
            client = request.client.host if request.client else None
            log.warning("webhook rejected", source=name, reason=exc.reason, client=client)
            return _json(401, {"error": "invalid_signature", "detail": exc.reason})

        reason: str | None = None
        delivery_id: str | None = None
        try:
            connector.parse(body)
        except PayloadError as exc:
            reason = exc.reason
        try:  # on its own: a header id still tells two malformed deliveries apart
            delivery_id = connector.delivery_id(inbound)
        except PayloadError as exc:
            reason = reason or exc.reason
        digest = hashlib.sha256(body).hexdigest()
        receipt = NewReceipt(
            source=name,
            vendor=source.config.vendor,
            delivery_id=delivery_id or f"sha256:{digest}",
            received_at=inbound.received_at,
            headers={h: inbound.headers[h] for h in connector.kept_headers if h in inbound.headers},
            body=body,
            body_sha256=digest,
            quarantine_reason=reason,
        )
        try:
            stored = await self.committer.submit(receipt)
        except StoreUnavailable:
            metrics.WEBHOOKS.labels(name, "unavailable").inc()
            return _json(
                transient, {"error": "store_unavailable", "detail": "try again later"}, retry
            )

        if stored.duplicate:
            outcome = "duplicate"
        elif reason:
            outcome = "quarantined"
            log.warning(
                "webhook quarantined", source=name, receipt_id=stored.receipt_id, reason=reason
            )
        else:
            outcome = "stored"
        metrics.WEBHOOKS.labels(name, outcome).inc()
        metrics.ACK_SECONDS.labels(name).observe(time.perf_counter() - started)
        payload: dict[str, object] = {"status": outcome, "receipt_id": stored.receipt_id}
        if reason:
            payload["detail"] = reason
        return _json(200, payload)
