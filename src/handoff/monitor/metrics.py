"""Prometheus metrics for every handoff edge. Labels are source names, never customer data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS = Counter(
    "handoff_webhooks_total",
    "Webhook requests by source and outcome "
    "(stored, duplicate, quarantined, rejected_signature, too_large, unavailable, unconfigured).",
    ["source", "outcome"],
)
UNKNOWN_SOURCE = Counter(
    "handoff_webhooks_unknown_source_total", "Webhook requests to a source name not configured."
)
ACK_SECONDS = Histogram(
    "handoff_gateway_ack_seconds",
    "Time from request start to acknowledgement, durable write included.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
COMMIT_BATCH = Histogram(
    "handoff_gateway_commit_batch_size",
    "Receipts written per group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
PROCESSED = Counter(
    "handoff_receipts_processed_total",
    "Receipts taken through the processor, by source and resulting status.",
    ["source", "status"],
)
EVENTS = Counter(
    "handoff_events_total", "Canonical events written, by source and type.", ["source", "type"]
)
RECEIVE_TO_PROCESS = Histogram(
    "handoff_receive_to_process_seconds",
    "Lag from receipt to processing.",
    ["source"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
PENDING = Gauge("handoff_receipts_pending", "Receipts waiting for the processor.")
SOURCE_TO_RECEIPT = Histogram(
    "handoff_source_to_receipt_seconds",
    "Lag from the source's own event time to handoff's receipt (how late a vendor sends).",
    ["source"],
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 604800),
)
SOURCE_TO_PROCESS = Histogram(
    "handoff_source_to_process_seconds",
    "Lag from the source's own event time to processing (identity, ledger, outbox done).",
    ["source"],
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 604800),
)
REVIEW_OPEN = Gauge("handoff_identity_review_open", "Identity review items waiting for a person.")
REVIEW_OLDEST_SECONDS = Gauge(
    "handoff_identity_review_oldest_seconds", "Age of the oldest open identity review item."
)
RECEIPTS_OLDEST_PENDING_SECONDS = Gauge(
    "handoff_receipts_oldest_pending_seconds",
    "Age of the oldest receipt waiting for the processor (0 when none waits).",
)
