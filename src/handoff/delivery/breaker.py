"""A circuit breaker per destination, as pure functions over a JSON state.

Closed: requests flow and outcomes are counted in 30-second buckets over a sliding window;
when at least `min_requests` were made in the window and `failure_ratio` of them failed, it
opens. Open: nothing is sent (rows wait, no attempt used) until `open_seconds` have passed.
Half-open: `probes` requests go through; a success closes it, a failure opens it again. A probe
whose worker died is forgotten after its lease, so a breaker never stays half-open for good.
Only failures that say the destination is unwell count (5xx, timeouts, connection errors,
3xx); a 429 is pacing and a 4xx is our problem, not the destination's health.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

State = dict[str, Any]
BUCKET = 30.0

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_CODES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True)
class Policy:
    failure_ratio: float = 0.7
    min_requests: int = 10
    window_seconds: float = 300.0
    open_seconds: float = 30.0
    probes: int = 1


def state_of(state: State) -> str:
    return str(state.get("state", CLOSED))


def disabled_reason(state: State) -> str | None:
    """Why a worker could not run this destination (a missing token), if one said so.

    Kept beside the breaker so every process (CLI, API, metrics) sees it; the breaker's own
    logic ignores it, and a worker that can run the destination clears it."""
    reason = state.get("disabled")
    return str(reason) if reason else None


def shown(state: State) -> str:
    """The state to show an operator: `disabled` wins over the breaker's state."""
    return "disabled" if disabled_reason(state) else state_of(state)


def admit(policy: Policy, state: State, now: float, probe_lease: float) -> float:
    """0.0 if a request may go now (a probe is counted), else seconds to wait."""
    current = state_of(state)
    if current == CLOSED:
        return 0.0
    if current == OPEN:
        reopen = float(state.get("opened_at", 0.0)) + policy.open_seconds
        if now < reopen:
            return reopen - now
        state["state"] = HALF_OPEN
        state["probes"] = []
    probes = [p for p in state.get("probes", []) if p > now]  # lease ends of probes in flight
    if len(probes) >= policy.probes:
        return max(1.0, float(min(probes)) - now)
    probes.append(now + probe_lease)
    state["probes"] = probes
    return 0.0


def record(policy: Policy, state: State, now: float, ok: int, failed: int) -> None:
    """Count the outcomes of a batch of requests to the destination."""
    if ok == 0 and failed == 0:
        return
    current = state_of(state)
    if current == HALF_OPEN:
        if failed:
            _open(state, now)
        else:
            _close(state)
        return
    if current == OPEN:  # stragglers sent before it opened
        return
    start = (now // BUCKET) * BUCKET
    buckets = [b for b in state.get("buckets", []) if b[0] > now - policy.window_seconds]
    if buckets and buckets[-1][0] == start:
        buckets[-1] = [start, buckets[-1][1] + ok, buckets[-1][2] + failed]
    else:
        buckets.append([start, ok, failed])
    state["buckets"] = buckets
    total = sum(b[1] + b[2] for b in buckets)
    failures = sum(b[2] for b in buckets)
    if total >= policy.min_requests and failures >= policy.failure_ratio * total:
        _open(state, now)


def _open(state: State, now: float) -> None:
    state.update(
        state=OPEN, opened_at=now, probes=[], buckets=[], trips=int(state.get("trips", 0)) + 1
    )


def _close(state: State) -> None:
    state.update(state=CLOSED, probes=[], buckets=[])
