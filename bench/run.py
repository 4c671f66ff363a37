"""Run the scenarios against the targets and write JSON, Markdown and a plot to bench/results/.

python -m bench.run [--targets asgi tutorial-memory ...] [--scenarios S1 S2 ...] [--quick]
"""

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from . import navigation
from . import search as search_bench
from .presence import p1_presence_churn
from .report import markdown, plot
from .scenarios import FULL, QUICK, SCENARIOS, Timing
from .server import ROOT
from .system import bytecode_compile, machine_speed, raise_nofile, wait_quiet
from .targets import TARGETS

logger = logging.getLogger("bench")

RESULTS = Path(__file__).resolve().parent / "results"
# Shares of a target's time: the ladders (S2, S4) run several steps, S1 and S3 one each.
WEIGHTS = {"S1": 1.0, "S2": 3.0, "S3": 1.5, "S4": 3.0, "S5": 2.0, "P1": 1.5}
# P1 (presence under churn, bench/presence.py): on request (--scenarios P1), or alone with
# `python -m bench.presence` as `make bench` does, so it takes no time from S1-S4's budget.
SCENARIOS["P1"] = p1_presence_churn
PACKAGES = ["Django", "channels", "channels-redis", "uvicorn", "websockets", "uvloop", "orjson"]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    redis = shutil.which("redis-server")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory,
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()}",
        "packages": versions,
        "redis_server": bool(redis),
        "speed": machine_speed(),
    }


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_target(
    name: str,
    scenarios: list[str],
    timing: Timing,
    log_dir: Path,
    deadline: float,
    quiet_wait: float = 0,
) -> dict[str, Any]:
    """Start one target, run the scenarios on a fresh server process each, and stop it."""
    out: dict[str, Any] = {"machine_busy_before_pct": wait_quiet(quiet_wait)}
    started = time.monotonic()
    try:
        with TARGETS[name](timing.needs(), log_dir) as running:
            out["setup_s"] = time.monotonic() - started
            out["workers"] = running.workers
            for index, scenario in enumerate(scenarios):
                now = time.monotonic()
                if now > deadline:
                    out[scenario] = {"error": "skipped: out of the run's time budget"}
                    continue
                # Ladders stop climbing at the end of the scenario's share of the target's time.
                weights = [WEIGHTS[s] for s in scenarios[index:]]
                share = (deadline - now) * weights[0] / sum(weights)
                scenario_timing = dataclasses.replace(timing, deadline=now + share)
                if index:
                    running.restart()
                logger.info("%s: %s", name, scenario)
                begun = time.monotonic()
                try:
                    out[scenario] = SCENARIOS[scenario](running, scenario_timing)
                except Exception as exc:
                    logger.exception("%s %s failed", name, scenario)
                    out[scenario] = {"error": f"{type(exc).__name__}: {exc}"}
                out[scenario]["elapsed_s"] = time.monotonic() - begun
                if not running.server.alive():
                    raise RuntimeError(f"{name} server died; see {running.server.log_path}")
    except Exception as exc:
        logger.error("%s failed: %s", name, exc)
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()
    out["elapsed_s"] = time.monotonic() - started
    return out


DEFAULT_SCENARIOS = ["S1", "S2", "S3", "S4", "S5"]


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=DEFAULT_SCENARIOS,
    )
    parser.add_argument("--quick", action="store_true", help="short steps, for a smoke test")
    parser.add_argument("--duration", type=float, help="seconds of sending per step")
    parser.add_argument("--s3-clients", type=int, help="idle sockets in S3 (default 10000)")
    parser.add_argument("--s5-clients", type=int, help="sockets in the S5 storm (default 5000)")
    parser.add_argument(
        "--s5-restart",
        choices=("stop", "hup"),
        help="S5's restart: SIGTERM then start again (default, the issue's), or SIGHUP to "
        "uvicorn's supervisor (a rolling restart; several workers only)",
    )
    parser.add_argument("--procs", type=int, help="load-generator processes (default 2)")
    parser.add_argument(
        "--s4-rates", type=float, nargs="+", help="S4's ladder: messages/s per user, in order"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--budget",
        type=float,
        # Enough for every ladder to reach its top on this 2-core machine with S3 at 10,000
        # sockets and S5's storms: at 480 s the production shape's S2 stopped half-way up and
        # its S4 and S5 were skipped (2026-11-26).
        default=1500,
        help="seconds for the whole run; ladders stop climbing when a target's share is spent",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0,
        help="seconds to wait, before each target, for other work on the machine to stop",
    )
    parser.add_argument(
        "--navigation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the sidebar and scroll-back at 1,000,000 messages (bench/navigation.py)",
    )
    parser.add_argument(
        "--guards", action="store_true", help="only the costs of the socket defences (guards.py)"
    )
    parser.add_argument(
        "--search",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the search benchmark: 1,000,000 messages on SQLite and PostgreSQL (~4 min)",
    )
    args = parser.parse_args(argv)
    if args.guards:
        from .guards import main as guards_main

        return guards_main(args.out)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    timing = QUICK if args.quick else FULL
    overrides = {
        "duration": args.duration,
        "s3_clients": args.s3_clients,
        "s5_clients": args.s5_clients,
        "s5_restart": args.s5_restart,
        "procs": args.procs,
    }
    overrides["s4_rates"] = tuple(args.s4_rates) if args.s4_rates else None
    timing = dataclasses.replace(timing, **{k: v for k, v in overrides.items() if v is not None})
    raise_nofile()  # every server and load-generator process inherits the raised limit
    bytecode_compile(ROOT)  # every target starts as an installed server does
    # Servers run in sessions of their own, so a SIGTERM to this process would not reach them:
    # turn it into an exception, and every ``with`` block stops what it started.
    signal.signal(signal.SIGTERM, _terminate)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / "logs" / stamp
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "timing": dataclasses.asdict(timing),
        "machine": machine(),
        "targets": {},
    }
    begun = time.monotonic()
    for index, name in enumerate(args.targets):
        # Each target gets an even share of what is left of the budget.
        share = (begun + args.budget - time.monotonic()) / (len(args.targets) - index)
        logger.info("target %s (%.0fs)", name, share)
        results["targets"][name] = run_target(
            name, args.scenarios, timing, log_dir, time.monotonic() + share, args.quiet_wait
        )
    if args.navigation:
        results["navigation"] = navigation.run(navigation.DATABASES, navigation.MESSAGES, log_dir)
    if args.search:
        results["search"] = search_bench.run(log_dir)
    results["elapsed_s"] = time.monotonic() - begun
    from . import formatting  # message formatting's cost, in this process (no server needed)

    results["formatting"] = formatting.run()

    base = args.out / f"run-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    if args.navigation:
        table += "\n## Navigation\n\n" + navigation.markdown(results["navigation"])
    table += search_bench.markdown(results.get("search", {}))
    table += "\n" + formatting.markdown(results["formatting"])
    base.with_suffix(".md").write_text(table)
    plotted = plot(results, base.with_suffix(".png"))
    # latest.* (kept in git) is what `make bench` ran: a run of some targets, scenarios or a
    # shorter timing writes its run-* files only.
    whole = (
        args.targets == list(TARGETS)
        and args.scenarios == DEFAULT_SCENARIOS
        and args.navigation
        and args.search
        and timing == FULL
    )
    for suffix in (".json", ".md", ".png") if whole else ():
        if suffix != ".png" or plotted:
            shutil.copyfile(base.with_suffix(suffix), args.out / f"latest{suffix}")
    sys.stdout.write(table)
    logger.info(
        "wrote %s.{json,md%s} in %.0fs", base, ",png" if plotted else "", results["elapsed_s"]
    )
    return 1 if any("error" in t for t in results["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
