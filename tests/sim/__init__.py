"""Tests for the retail stack simulator (handoff.sim)."""
