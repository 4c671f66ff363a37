"""Turn a run's JSON into a Markdown table, the issue's ratios and a p99-versus-load plot."""

import logging
from pathlib import Path
from typing import Any

from .scenarios import P99_LIMIT_MS

logger = logging.getLogger(__name__)

# (product target, reference target, scenario, what, bound): the ratios the issue asks for.
RATIOS = [
    ("product-embedded", "asgi", "S2", "sustained deliveries/s", ">= 0.5"),
    ("product-embedded", "tutorial-memory", "S2", "sustained deliveries/s", ">= 10"),
    ("product-prod", "tutorial-redis", "S2", "sustained deliveries/s", ">= 5"),
    ("product-embedded", "asgi", "S1", "p99 latency", "<= 2"),
    ("product-prod", "asgi", "S1", "p99 latency", "<= 2"),
    ("product-embedded", "asgi", "S3", "RSS per connection", "<= 1.3"),
    ("product-prod", "asgi", "S3", "RSS per connection", "<= 1.3"),
    ("product-prod", "tutorial-redis", "S4", "sustained messages/s", ">= 2"),
    ("product-embedded", "asgi", "S5", "time until every socket caught up", "<= 2"),
    ("product-prod", "asgi", "S5", "time until every socket caught up", "<= 2"),
]


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _cpu_cell(cpu: dict[str, Any] | None) -> str:
    """S5's CPU while serving (``storm._cpu_shares``): machine / server / services / load
    generator."""
    if not cpu:
        return "-"
    services = " + ".join(f"{n} {v:.0f}" for n, v in cpu["services_pct"].items()) or "none"
    return (
        f"{cpu['machine_pct']:.0f} / {cpu['server_pct']:.0f} / {services} "
        f"/ {cpu['loadgen_pct']:.0f}"
    )


def _best(scenario: dict[str, Any] | None) -> dict[str, Any] | None:
    return scenario.get("best") if scenario else None


def _metric(results: dict[str, Any], target: str, scenario: str, what: str) -> float | None:
    data = results["targets"].get(target, {}).get(scenario)
    if not data or "error" in data:
        return None
    if what == "sustained deliveries/s":
        best = _best(data)
        return best["deliveries_per_s"] if best else 0.0
    if what == "sustained messages/s":
        best = _best(data)
        return best["messages_per_s"] if best else 0.0
    if what == "p99 latency":
        return data["latency_ms"]["p99"] if data["loss_pct"] == 0 else None
    if what == "RSS per connection":
        return data["rss_per_conn_kib"]
    if what == "time until every socket caught up":
        return data["all_caught_up_s"]  # None: not every socket caught up within the limit
    raise ValueError(what)


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's target ratios that this run can compute."""
    rows = []
    for product, reference, scenario, what, bound in RATIOS:
        mine = _metric(results, product, scenario, what)
        theirs = _metric(results, reference, scenario, what)
        if mine is None or not theirs:
            continue
        ratio = mine / theirs
        limit = float(bound.split()[1])
        met = ratio >= limit if bound.startswith(">=") else ratio <= limit
        rows.append(
            {
                "product": product,
                "reference": reference,
                "scenario": scenario,
                "what": what,
                "ratio": ratio,
                "bound": bound,
                "met": met,
            }
        )
    return rows


def _below(scenario: dict[str, Any], key: str) -> str:
    """For a ladder with no sustained step: under the least offered load that was tried."""
    steps = scenario.get("steps") or []
    if not steps:
        return "-"
    offered = "offered_deliveries_per_s" if key == "deliveries_per_s" else "messages_per_s"
    return f"< {min(s[offered] for s in steps):,.0f}"


def _cpu(step: dict[str, Any]) -> str:
    server = step["server_cpu_pct"] + sum(step.get("services_cpu_pct", {}).values())
    return f"{server:.0f} / {step['loadgen_cpu_pct']:.0f} / {step.get('other_cpu_pct', 0):.0f}"


def _row(name: str, data: dict[str, Any]) -> str:
    s1, s2, s3, s4 = (data.get(k) or {} for k in ("S1", "S2", "S3", "S4"))
    cells = [name]
    if s1 and "error" not in s1:
        lat = s1["latency_ms"]
        cells += [
            _fmt(s1["deliveries_per_s"]),
            _fmt(s1["loss_pct"], 2),
            f"{lat['p50']:.1f} / {lat['p99']:.1f}",
        ]
    else:
        cells += ["-", "-", "-"]
    best2 = _best(s2)
    if best2:
        cells += [
            _fmt(best2["deliveries_per_s"]),
            _fmt(best2["latency_ms"]["p99"], 1),
            _cpu(best2),
        ]
    else:
        cells += [_below(s2, "deliveries_per_s"), "-", "-"]
    if s3 and "error" not in s3:
        conns = s3["connections"]
        cells += [f"{conns['opened']:,} / {conns['attempted']:,}", _fmt(s3["rss_per_conn_kib"], 1)]
    else:
        cells += ["-", "-"]
    best4 = _best(s4)
    if best4:
        stored = best4.get("stored_per_s")
        cells += [
            _fmt(best4["messages_per_s"]),
            _fmt(stored) if stored is not None else "n/a",
            _cpu(best4),
        ]
    else:
        cells += [_below(s4, "messages_per_s"), "-", "-"]
    return "| " + " | ".join(cells) + " |"


def _speed(machine: dict[str, Any]) -> str:
    """The machine's speed probes (``bench.system.machine_speed``), if the run has them."""
    speed = machine.get("speed")
    if not speed:
        return ""
    return (
        f" Speed: a 2,000,000-step Python loop {speed['python_loop_ms']} ms, a thread wake-up"
        f" round trip {speed['thread_wake_us']} µs (to compare runs across machines)."
    )


def markdown(results: dict[str, Any]) -> str:
    """The run as a Markdown document: machine, table, ratios, notes."""
    machine = results["machine"]
    lines = [
        f"# Benchmark run {results['started']}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']:.0f} GB, "
        f"Python {machine['python']}, {machine['kernel']}. Mode: "
        f"{'quick' if results['quick'] else 'full'}; load generator in "
        f"{results['timing']['procs']} processes on the same machine.{_speed(machine)}",
        "",
        "| target | S1 deliveries/s | S1 loss % | S1 p50 / p99 ms | S2 sustained deliveries/s "
        "| S2 p99 ms | S2 CPU % server / loadgen / other | S3 open / tried | S3 RSS KiB per conn "
        "| S4 sustained msgs/s | S4 stored msgs/s | S4 CPU % server / loadgen / other |",
        "|---" * 12 + "|",
    ]
    for name, data in results["targets"].items():
        lines.append(_row(name, data))
    lines += [
        "",
        f"Sustained: 0 % loss and p99 under {P99_LIMIT_MS:.0f} ms, at the highest step that met "
        "both. CPU % is of one core, summed over processes (200 % is the whole machine): the "
        "server's (with its Redis and PostgreSQL), the load generator's, and everything else's "
        "on the machine meanwhile.",
    ]
    busy = [
        f"{n} {d['machine_busy_before_pct']:.0f} %"
        for n, d in results["targets"].items()
        if "machine_busy_before_pct" in d
    ]
    if busy:
        lines += ["", "Machine busy with other work just before each target: " + ", ".join(busy)]
    storms = [(n, d["S5"]) for n, d in results["targets"].items() if "clients" in d.get("S5", {})]
    if storms:
        lines += [
            "",
            "| S5 reconnect storm | sockets | stopped / serving s | every socket caught up s "
            "| p50 / p99 s | lost | doubled | connects failed | closed under it "
            "| CPU % while serving: machine / server / services / load generator |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, s5 in storms:
            ready = s5.get("ready_s") or {}
            lines.append(
                f"| {name} | {s5['caught_up']:,} / {s5['clients']:,} "
                f"| {_fmt(s5.get('stop_s'), 1)} / {_fmt(s5.get('serving_s'), 1)} "
                f"| {_fmt(s5['all_caught_up_s'], 1)} "
                f"| {_fmt(ready.get('p50'), 1)} / {_fmt(ready.get('p99'), 1)} "
                f"| {'-' if s5['lost'] is None else s5['lost']} | {s5['doubled']} "
                f"| {sum(s5['failures'].values()):,} | {sum(s5['closes'].values()):,} "
                f"| {_cpu_cell(s5.get('cpu_serving'))} |"
            )
    errors = {n: d["error"] for n, d in results["targets"].items() if "error" in d}
    errors |= {
        f"{n} {s}": d[s]["error"]
        for n, d in results["targets"].items()
        for s in ("S1", "S2", "S3", "S4", "S5")
        if isinstance(d.get(s), dict) and "error" in d[s]
    }
    if errors:
        lines += ["", "Errors:", ""] + [f"- {k}: {v}" for k, v in errors.items()]
    rows = ratios(results)
    if rows:
        lines += ["", "| ratio | scenario | measured | target | met |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['product']} / {r['reference']} {r['what']} | {r['scenario']} "
                f"| {r['ratio']:.2f} | {r['bound']} | {'yes' if r['met'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> bool:
    """Draw p99 latency against offered deliveries/s (S2 steps) per target; False if no data."""
    try:
        import matplotlib
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    drawn = False
    for name, data in results["targets"].items():
        steps = [s for s in (data.get("S2") or {}).get("steps") or [] if not s.get("retried")]
        points = sorted(
            (s["offered_deliveries_per_s"], max(s["latency_ms"]["p99"], 0.1), s["loss_pct"])
            for s in steps
        )
        if not points:
            continue
        xs, ys, _ = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=name)
        lossy = [(x, y) for x, y, loss in points if loss > 0]
        if lossy:
            ax.scatter(*zip(*lossy, strict=True), s=90, facecolors="none", edgecolors="red", lw=1.5)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.axhline(P99_LIMIT_MS, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered deliveries/s (S2: 200 clients, 20 senders)")
    ax.set_ylabel("p99 end-to-end latency, ms")
    ax.set_title("Fan-out: p99 latency against load (red rings: messages lost)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
