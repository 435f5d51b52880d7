"""Outbound writers: one per destination vendor, each speaking that vendor's documented API."""
