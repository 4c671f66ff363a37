"""The S5 storm's own bookkeeping, which its report is built from."""

from bench.report import _cpu_cell
from bench.storm import _Cpu, _cpu_shares, _timeline


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


def test_the_cpu_shares_are_percent_of_one_core_over_the_span_between_two_moments():
    begin = _Cpu(at=10.0, machine=100.0, server=5.0, services={"redis": 1.0}, loadgen=2.0)
    end = _Cpu(at=12.0, machine=103.8, server=7.5, services={"redis": 1.2}, loadgen=2.4)
    assert _cpu_shares(begin, end) == {
        "s": 2.0,
        "machine_pct": 190.0,  # of both cores together
        "server_pct": 125.0,
        "services_pct": {"redis": 10.0},
        "loadgen_pct": 20.0,
    }


def test_the_report_shows_the_storms_cpu_while_serving():
    cpu = {
        "s": 2.0,
        "machine_pct": 190.0,
        "server_pct": 125.0,
        "services_pct": {"postgres": 20.0, "redis": 10.0},
        "loadgen_pct": 20.0,
    }
    assert _cpu_cell(cpu) == "190 / 125 / postgres 20 + redis 10 / 20"
    assert _cpu_cell(None) == "-"
