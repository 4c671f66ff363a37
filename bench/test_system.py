"""The machine's speed probes, which each run's report carries to compare machines."""

from bench.report import _speed
from bench.system import machine_speed


def test_the_speed_probes_measure_a_loop_and_a_thread_round_trip():
    speed = machine_speed(rounds=1)
    assert set(speed) == {"python_loop_ms", "thread_wake_us"}
    assert speed["python_loop_ms"] > 1  # 2,000,000 steps of Python take milliseconds
    assert 0 < speed["thread_wake_us"] < 100_000


def test_the_report_names_the_speed_only_when_the_run_measured_it():
    line = _speed({"speed": {"python_loop_ms": 61.5, "thread_wake_us": 38.2}})
    assert "61.5 ms" in line and "38.2 µs" in line
    assert _speed({"cpu": "AMD EPYC"}) == ""  # runs from before the probes
