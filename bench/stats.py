"""Per-process load statistics and how they merge into one report."""

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, nearest-rank; 0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class PhaseStats:
    """What one load-generator process saw in one phase; ``merge`` adds processes together."""

    opened_by_room: Counter = field(default_factory=Counter)
    sent_room: dict[str, str] = field(default_factory=dict)  # message id -> room
    received: Counter = field(default_factory=Counter)  # message id -> deliveries
    latencies_ms: array = field(default_factory=lambda: array("d"))
    errors: Counter = field(default_factory=Counter)  # error code -> frames
    dropped: int = 0  # sockets the server closed during the phase
    cpu_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A picklable, JSON-friendly form for the trip back to the parent process."""
        return {
            "opened_by_room": dict(self.opened_by_room),
            "sent_room": self.sent_room,
            "received": dict(self.received),
            "latencies_ms": self.latencies_ms.tobytes(),
            "errors": dict(self.errors),
            "dropped": self.dropped,
            "cpu_s": self.cpu_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PhaseStats":
        """Inverse of ``to_dict``."""
        latencies = array("d")
        latencies.frombytes(data["latencies_ms"])
        return cls(
            opened_by_room=Counter(data["opened_by_room"]),
            sent_room=dict(data["sent_room"]),
            received=Counter(data["received"]),
            latencies_ms=latencies,
            errors=Counter(data["errors"]),
            dropped=data["dropped"],
            cpu_s=data["cpu_s"],
        )


def merge(parts: list[PhaseStats]) -> PhaseStats:
    """Add up several processes' statistics of the same phase."""
    total = PhaseStats()
    for part in parts:
        total.opened_by_room.update(part.opened_by_room)
        total.sent_room.update(part.sent_room)
        total.received.update(part.received)
        total.latencies_ms.extend(part.latencies_ms)
        total.errors.update(part.errors)
        total.dropped += part.dropped
        total.cpu_s += part.cpu_s
    return total


def summarise(stats: PhaseStats, window_s: float) -> dict[str, Any]:
    """Turn merged statistics into the numbers a report shows.

    Each message sent is expected once on every socket opened in its room, the sender's included.
    A socket that hears a message twice does not make up for one that never heard it. Rates and
    CPU are per second of the measured window (the send time after the warm-up).
    """
    expected = received = duplicates = 0
    for message_id, room in stats.sent_room.items():
        members = stats.opened_by_room.get(room, 0)
        got = stats.received.get(message_id, 0)
        expected += members
        received += min(got, members)
        duplicates += max(0, got - members)
    latencies = sorted(stats.latencies_ms)
    window_s = max(window_s, 1e-9)
    return {
        "messages_sent": len(stats.sent_room),
        "messages_per_s": len(stats.sent_room) / window_s,
        "deliveries_expected": expected,
        "deliveries_received": received,
        "duplicates": duplicates,
        "loss_pct": 100.0 * (expected - received) / expected if expected else 0.0,
        "offered_deliveries_per_s": expected / window_s,
        "deliveries_per_s": received / window_s,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": latencies[-1] if latencies else 0.0,
        },
        "errors": dict(stats.errors),
        "dropped": stats.dropped,
        "loadgen_cpu_s": stats.cpu_s,
        "loadgen_cpu_pct": 100.0 * stats.cpu_s / window_s,
        "window_s": window_s,
    }
