"""Guaranteed delivery: the outbox, workers, pacing and retries (docs/delivery.md)."""
