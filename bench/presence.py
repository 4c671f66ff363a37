"""P1, presence under churn: a 2,000-socket room where 100 users come and go every second.

Every socket asks for presence (``?presence=1``, as the page does), so each gets the room's
``presence`` frame whenever its online list changes (at most once a second). S1's senders
(5 x 4 messages/s) talk meanwhile; the figure is their message latency p99, without churn and
with it, against S1's bound (p99 <= 2 x the bare ASGI ceiling's S1 p99, measured in the same run).

    python -m bench.presence                                   # asgi S1, then P1 on the product
    python -m bench.presence --targets asgi product-prod --sockets 2000 --churn 100
    python -m bench.run --targets asgi product-embedded --scenarios S1 P1

Bounded: one quiet and one churning phase of ``Timing.duration`` seconds on one target process.
"""

import argparse
import asyncio
import itertools
import json
import logging
import multiprocessing
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

from .loadgen import Config, LoadRun, Phase, room_clients
from .scenarios import FULL, SCENARIOS, Timing, measured_phase, warm_up
from .server import ROOT
from .system import raise_nofile
from .targets import TARGETS, Needs, Running

logger = logging.getLogger(__name__)

SOCKETS = 2000  # steady sockets in the room, one user each
CHURN = 100  # users who come (and as many who go) per second
LIFETIME = 1.0  # seconds a churning user stays
RESULTS = Path(__file__).resolve().parent / "results"


def members_seed(env: dict[str, str], slug: str, count: int) -> None:
    """Make the first ``count`` bench users members of the room (a page view does it)."""
    code = (
        "import django; django.setup()\n"
        "from django.contrib.auth import get_user_model\n"
        "from rooms.models import Membership, Room\n"
        f"room = Room.objects.get(slug={slug!r})\n"
        f"names = ['bench-user-%d' % i for i in range({count})]\n"
        "users = get_user_model().objects.filter(username__in=names)\n"
        "Membership.objects.bulk_create([Membership(room=room, user=u) for u in users],"
        " ignore_conflicts=True, batch_size=1000)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=300)


async def _churn(url: str, origin: str, cookies: list[str], seconds: float) -> dict[str, Any]:
    """Open CHURN sockets a second, each closed LIFETIME later; count what one listener hears."""
    opened = failed = 0
    presence_at: list[float] = []

    async def listen() -> None:
        async with connect(url, origin=origin, additional_headers=[("Cookie", cookies[0])]) as ws:
            async for raw in ws:
                if orjson.loads(raw).get("type") == "presence":
                    presence_at.append(time.monotonic())

    async def visit(cookie: str) -> None:
        nonlocal opened, failed
        try:
            async with connect(
                url, origin=origin, additional_headers=[("Cookie", cookie)], open_timeout=10
            ):
                opened += 1
                await asyncio.sleep(LIFETIME)
        except Exception:
            failed += 1

    listener = asyncio.ensure_future(listen())
    visits, start = [], time.monotonic()
    due, n = start, 1
    while due < start + seconds:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        visits.append(asyncio.ensure_future(visit(cookies[n])))
        n = n % (len(cookies) - 1) + 1
        due += 1.0 / CHURN
    await asyncio.gather(*visits)
    listener.cancel()
    span = [t for t in presence_at if start + 1 <= t <= start + seconds]
    gaps = [b - a for a, b in itertools.pairwise(span)]
    return {
        "visits_opened": opened,
        "visits_failed": failed,
        "arrivals_per_s": opened / seconds,
        "presence_frames_per_s_at_one_socket": len(span) / max(seconds - 1, 1e-9),
        "presence_min_gap_s": min(gaps) if gaps else None,
    }


def _churn_main(pipe: Any, url: str, origin: str, cookies: list[str], seconds: float) -> None:
    pipe.send(asyncio.run(_churn(url, origin, cookies, seconds)))


def p1_presence_churn(running: Running, timing: Timing) -> dict[str, Any]:
    """P1 on a product target; other targets have no presence."""
    if not running.stores_messages:
        return {"skipped": "presence is the product's alone"}
    pool = int(CHURN * LIFETIME * 2) + 1  # users enough that a visitor never meets itself
    room = running.room_slugs(1)
    members_seed(running.env, room[0], SOCKETS + pool)
    warm_up(running, timing)
    pattern = running.ws_pattern + "?presence=1"
    clients = room_clients(pattern, room, SOCKETS, timing.s1_senders, running.headers_for)
    churners = [running.headers_for(SOCKETS + i)[0][1] for i in range(pool)]
    phase = Phase(timing.s1_rate, timing.duration, timing.warmup, timing.s1_drain)
    config = Config(procs=timing.procs, origin=running.base_url)
    with LoadRun(clients, config) as run:
        quiet = measured_phase(run, running, phase)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        url = pattern.format(room=room[0])
        churner = context.Process(
            target=_churn_main,
            args=(child, url, running.base_url, churners, phase.duration + 1.5),
            daemon=True,
        )
        churner.start()
        time.sleep(1.0)  # the churn is under way before the phase starts
        churning = measured_phase(run, running, phase)
        churn = parent.recv() if parent.poll(phase.duration + 60) else {"error": "no result"}
        churner.join(10)
    return {
        "sockets": SOCKETS,
        "churn_per_s": CHURN,
        "quiet": quiet,
        "churn": churning,
        "churner": churn,
        "p99_quiet_ms": quiet["latency_ms"]["p99"],
        "p99_churn_ms": churning["latency_ms"]["p99"],
        "loss_churn_pct": churning["loss_pct"],
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: the ceiling's S1, then P1 on each product target; prints the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["asgi", "product-embedded"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    raise_nofile()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    log_dir = RESULTS / "logs" / f"presence-{stamp}"
    needs = Needs(users=SOCKETS + int(CHURN * LIFETIME * 2) + 10, rooms=1)
    results: dict[str, Any] = {"started": stamp, "targets": {}}
    for name in args.targets:
        with TARGETS[name](needs, log_dir) as running:
            scenario = p1_presence_churn if running.stores_messages else SCENARIOS["S1"]
            results["targets"][name] = scenario(running, FULL)
    ceiling = (results["targets"].get("asgi") or {}).get("latency_ms", {}).get("p99")
    for name, out in results["targets"].items():
        if "p99_churn_ms" in out:
            ratio = out["p99_churn_ms"] / ceiling if ceiling else None
            out["p99_churn_over_ceiling_s1"] = ratio
            print(
                f"{name}: p99 {out['p99_quiet_ms']:.1f} ms quiet, {out['p99_churn_ms']:.1f} ms "
                f"churning (loss {out['loss_churn_pct']:.2f} %); ceiling S1 p99 {ceiling} ms; "
                f"ratio {ratio if ratio is None else round(ratio, 2)} (bound 2); "
                f"churner {out['churner']}"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"presence-{stamp}.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
