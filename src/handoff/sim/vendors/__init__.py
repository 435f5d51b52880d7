"""Vendor look-alikes: one module per vendor, each an ASGI API over inspectable state plus the
builder and signer of the webhooks that vendor fires (see docs/simulator.md)."""
