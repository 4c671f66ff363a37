"""The load generator's statistics: per-process parts merge into one honest report."""

from array import array
from collections import Counter

from bench.stats import PhaseStats, merge, percentile, summarise


def _part(opened: dict, sent: dict, received: dict, latencies: list[float], cpu: float = 0.0):
    return PhaseStats(
        opened_by_room=Counter(opened),
        sent_room=sent,
        received=Counter(received),
        latencies_ms=array("d", latencies),
        cpu_s=cpu,
    )


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([], 99) == 0


def test_merged_parts_count_every_socket_of_the_room_in_any_process():
    # Room "a" has 2 sockets in process one and 1 in process two; one message sent from each.
    one = _part({"a": 2}, {"m1": "a"}, {"m1": 2, "m2": 2}, [1.0, 2.0, 3.0, 4.0], cpu=0.5)
    two = _part({"a": 1}, {"m2": "a"}, {"m1": 1, "m2": 1}, [5.0, 6.0], cpu=0.25)

    summary = summarise(merge([one, two]), window_s=2.0)

    assert summary["messages_sent"] == 2
    assert summary["deliveries_expected"] == 6
    assert summary["deliveries_received"] == 6
    assert summary["loss_pct"] == 0
    assert summary["deliveries_per_s"] == 3
    assert summary["latency_ms"]["max"] == 6
    assert summary["loadgen_cpu_pct"] == 37.5


def test_duplicates_do_not_hide_a_lost_delivery():
    # Three sockets in room "a"; m1 reached one socket twice and another not at all.
    part = _part({"a": 3}, {"m1": "a"}, {"m1": 4}, [1.0] * 4)

    summary = summarise(merge([part]), window_s=1.0)

    assert summary["deliveries_expected"] == 3
    assert summary["deliveries_received"] == 3
    assert summary["duplicates"] == 1
    part = _part({"a": 3}, {"m1": "a", "m2": "a"}, {"m1": 3, "m2": 1}, [1.0] * 4)
    assert summarise(part, window_s=1.0)["loss_pct"] == 100 * 2 / 6


def test_deliveries_of_unmeasured_messages_are_ignored():
    part = _part({"a": 1}, {"m1": "a"}, {"m1": 1, "warm": 5}, [1.0])

    summary = summarise(part, window_s=1.0)

    assert summary["deliveries_received"] == 1
    assert summary["duplicates"] == 0


def test_stats_survive_the_trip_between_processes():
    part = _part({"a": 2}, {"m1": "a"}, {"m1": 2}, [1.5, 2.5], cpu=0.1)
    part.errors["rate_limited"] = 3
    part.dropped = 1

    back = PhaseStats.from_dict(part.to_dict())

    assert back == part
