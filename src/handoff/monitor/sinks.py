"""Where alerts go: a Slack-compatible incoming webhook, email over SMTP, a signed webhook.

A sink that fails is logged and skipped: one unreachable sink must not silence the others, and
the evaluator tries again at the alert's next notice.
"""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

import httpx
import orjson

from handoff import logs
from handoff.config import AlertsConfig
from handoff.connectors import standard

log = logs.get(__name__)


@dataclass(frozen=True)
class Notice:
    """One message about one alert: it opened, it is still open, or it resolved."""

    alert_id: int
    state: str  # opened | repeat | resolved
    rule: str
    key: str
    summary: str
    advice: str
    since: datetime
    customers: int | None
    at: datetime

    @property
    def title(self) -> str:
        word = {"opened": "ALERT", "repeat": "STILL FAILING", "resolved": "RESOLVED"}[self.state]
        return f"[handoff] {word}: {self.summary}"

    def text(self) -> str:
        lines = [self.title, f"since {self.since:%Y-%m-%d %H:%M} UTC · rule {self.rule}"]
        if self.customers is not None:
            lines.append(f"customers affected: {self.customers:,}")
        if self.state != "resolved":
            lines.append(f"what to do: {self.advice}")
        return "\n".join(lines)

    def json(self) -> dict[str, object]:
        return {
            "alert_id": self.alert_id,
            "state": self.state,
            "rule": self.rule,
            "handoff": self.key,
            "summary": self.summary,
            "advice": self.advice,
            "since": self.since.isoformat(),
            "customers": self.customers,
            "at": self.at.isoformat(),
        }


class Sink(Protocol):
    name: str

    def send(self, notice: Notice) -> None: ...


@dataclass
class SlackSink:
    url: str
    name: str = "slack"

    def send(self, notice: Notice) -> None:
        response = httpx.post(self.url, json={"text": notice.text()}, timeout=10)
        response.raise_for_status()


@dataclass
class EmailSink:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = False
    user: str | None = None
    password: str | None = None
    name: str = "email"

    def send(self, notice: Notice) -> None:
        message = EmailMessage()
        message["Subject"] = notice.title
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message.set_content(notice.text())
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user and self.password:
                smtp.login(self.user, self.password)
            smtp.send_message(message)


@dataclass
class WebhookSink:
    url: str
    secret: str
    name: str = "webhook"

    def send(self, notice: Notice) -> None:
        body = orjson.dumps({"type": f"alert.{notice.state}", "data": notice.json()})
        headers = standard.sign(
            self.secret, f"msg_{uuid.uuid4().hex}", int(notice.at.timestamp()), body
        )
        response = httpx.post(
            self.url,
            content=body,
            headers=headers | {"content-type": "application/json"},
            timeout=10,
        )
        response.raise_for_status()


def build_sinks(cfg: AlertsConfig, env: Mapping[str, str]) -> list[Sink]:
    sinks: list[Sink] = []
    if cfg.slack_webhook_env and env.get(cfg.slack_webhook_env):
        sinks.append(SlackSink(env[cfg.slack_webhook_env]))
    if cfg.smtp_host and cfg.smtp_to:
        sinks.append(
            EmailSink(
                cfg.smtp_host,
                cfg.smtp_port,
                cfg.smtp_from,
                tuple(cfg.smtp_to),
                cfg.smtp_starttls,
                env.get(cfg.smtp_user_env) if cfg.smtp_user_env else None,
                env.get(cfg.smtp_password_env) if cfg.smtp_password_env else None,
            )
        )
    if cfg.webhook_url and cfg.webhook_secret_env and env.get(cfg.webhook_secret_env):
        sinks.append(WebhookSink(cfg.webhook_url, env[cfg.webhook_secret_env]))
    return sinks


def deliver(sinks: list[Sink], notice: Notice) -> int:
    """Send to every sink; returns how many took it."""
    sent = 0
    for sink in sinks:
        try:
            sink.send(notice)
            sent += 1
        except Exception as exc:  # a sink down must not stop the others
            log.warning(
                "alert sink failed", sink=sink.name, error=type(exc).__name__, alert=notice.alert_id
            )
    return sent
