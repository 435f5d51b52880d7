"""Read-back: CRM contacts a webhook named by id alone are read through the CRM's API and
written into the receive log as their profile, so identity can place them.

HubSpot's webhooks carry the contact id and nothing else. Until something else is known about
such a contact, its id is a customer of its own: a VIP flag an agent sets on it would land on
nobody. Every few seconds this task takes the ids whose customer holds no email, phone or name
(`store.identity.thin_identities`), reads them in batches of 100, and stores each contact as a
receipt (`read-back:<id>:<updatedAt>`, deduplicated like any delivery) that the processor maps
like a webhook: the profile's email then joins the contact to its customer. A contact the CRM
no longer has is stored quarantined with the reason, so it is read once and shown to operators.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping

import httpx
import orjson
import structlog
from fastapi import FastAPI

from handoff.connectors.hubspot import READ_BACK_HEADER, HubSpotConnector, read_contacts
from handoff.hub import Hub
from handoff.store import identity as identity_store
from handoff.store import receipts as receipt_store
from handoff.store.receipts import NewReceipt

log = structlog.get_logger(__name__)


class ReadBack:
    def __init__(
        self,
        hub: Hub,
        source: str,
        base_url: str,
        token: str,
        *,
        every_seconds: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.hub = hub
        self.source = source
        self.base_url = base_url
        self.token = token
        self.every = every_seconds
        self.client = client or httpx.Client(timeout=15.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, limit: int = 100) -> int:
        """Read back one batch; the number of receipts written."""
        with self.hub.db.read() as conn:
            ids = identity_store.thin_identities(conn, self.source, limit)
        if not ids:
            return 0
        found, missing = read_contacts(self.client, self.base_url, self.token, ids)
        now = self.hub.clock.now()
        batch = [
            self._receipt(str(c.get("id")), orjson.dumps(c), str(c.get("updatedAt"))) for c in found
        ]
        batch += [
            self._receipt(i, orjson.dumps({"id": i}), "missing", "contact not found in the CRM")
            for i in missing
        ]
        with self.hub.db.write() as conn:
            stored = receipt_store.insert_batch(conn, batch, now)
        written = sum(1 for s in stored if not s.duplicate)
        log.info(
            "crm contacts read back", source=self.source, read=len(found), missing=len(missing)
        )
        return written

    def _receipt(
        self, contact_id: str, body: bytes, version: str, reason: str | None = None
    ) -> NewReceipt:
        return NewReceipt(
            source=self.source,
            vendor="hubspot",
            delivery_id=f"read-back:{contact_id}:{version}",
            received_at=self.hub.clock.now(),
            headers={READ_BACK_HEADER: "contact"},
            body=body,
            body_sha256=hashlib.sha256(body).hexdigest(),
            quarantine_reason=reason,
        )

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                while self.run_once() and not self._stop.is_set():
                    pass
            except httpx.HTTPError as exc:  # the CRM is down or refuses: try again next round
                log.warning("crm read-back failed", source=self.source, error=str(exc)[:200])
            except Exception:
                log.exception("crm read-back crashed; retrying next round", source=self.source)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"read-back-{self.source}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.close()


def read_backs(hub: Hub, env: Mapping[str, str] | None = None) -> list[ReadBack]:
    """One task per HubSpot source configured with `api_base_url` and a token that is set."""
    environ = hub.env if env is None else env
    tasks: list[ReadBack] = []
    for name, source in hub.sources.items():
        connector = source.connector
        if not isinstance(connector, HubSpotConnector) or connector.api_base_url is None:
            continue
        token = environ.get(connector.api_token_env or "")
        if not token:
            log.error(
                "crm read-back disabled: token not set", source=name, env=connector.api_token_env
            )
            continue
        tasks.append(ReadBack(hub, name, connector.api_base_url, token))
    return tasks


def register(app: FastAPI, hub: Hub, *, run_worker: bool) -> list[ReadBack]:
    """No routes; the read-back runs where the processor runs."""
    return read_backs(hub) if run_worker else []
