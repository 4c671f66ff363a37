"""The S5 storm's own bookkeeping, which its report is built from."""

from bench.storm import _timeline


def test_the_timeline_counts_each_reader_event_in_its_quarter_second_after_the_sigterm():
    parts = [
        {"failed_s": [0.1, 0.3], "opened_s": [0.6], "ready_s": [0.7, -1.0]},
        {"failed_s": [], "opened_s": [0.55, 1.2], "ready_s": [1.3]},
    ]
    assert _timeline(parts) == [
        [0.0, 1, 0, 0],
        [0.25, 1, 0, 0],
        [0.5, 0, 2, 1],  # a caught-up time before the restart (-1.0) is not counted
        [1.0, 0, 1, 0],
        [1.25, 0, 0, 1],
    ]
