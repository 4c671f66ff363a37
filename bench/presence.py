"""P1, presence under churn: a 2,000-socket room where 100 users come and go every second.

Every socket asks for presence (``?presence=1``, as the page does), so each gets the room's
``presence`` frame whenever its online list changes (at most once a second). S1's senders
(5 x 4 messages/s) talk meanwhile; the figure is their message latency p99, without churn and
with it, against S1's bound: p99 <= 2 x the bare ASGI ceiling's p99, the ceiling measured in the
same run and the same shape (2,000 sockets, S1's senders), as P1 on the ``asgi`` target.

    python -m bench.presence                           # the ceiling, then P1 on the product
    python -m bench.presence --targets asgi product-prod
    python -m bench.run --targets asgi product-embedded --scenarios P1
    python -m bench.presence --micro                   # the bookkeeping's CPU per tick alone

Bounded: on a product target, a quiet and a churning phase of ``Timing.p1_duration`` (12)
seconds with presence, then the same without (the control); about four minutes in all.
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
from .scenarios import FULL, Timing, measured_phase, warm_up
from .server import ROOT
from .system import raise_nofile
from .targets import PRODUCT_ENV, TARGETS, Needs, Running

logger = logging.getLogger(__name__)

SOCKETS = 2000  # steady sockets in the room, one user each
CHURN = 100  # users who come (and as many who go) per second
LIFETIME = 1.0  # seconds a churning user stays
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_TARGETS = ["asgi", "product-embedded"]  # what `make bench` runs


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
        async with connect(
            url, origin=origin, additional_headers=[("Cookie", cookies[0])], proxy=None
        ) as ws:
            async for raw in ws:
                if orjson.loads(raw).get("type") == "presence":
                    presence_at.append(time.monotonic())

    async def visit(cookie: str) -> None:
        nonlocal opened, failed
        try:
            async with connect(
                url,
                origin=origin,
                additional_headers=[("Cookie", cookie)],
                open_timeout=10,
                proxy=None,
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


def _run_phases(running: Running, timing: Timing, room: str, presence: bool) -> dict[str, Any]:
    """A quiet phase, then one with churn, on SOCKETS sockets of the room."""
    pool = int(CHURN * LIFETIME * 2) + 1  # users enough that a visitor never meets itself
    pattern = running.ws_pattern + ("?presence=1" if presence else "")
    clients = room_clients(pattern, [room], SOCKETS, timing.s1_senders, running.headers_for)
    churners = [running.headers_for(SOCKETS + i)[0][1] for i in range(pool)]
    phase = Phase(timing.s1_rate, timing.p1_duration, timing.warmup, timing.s1_drain)
    config = Config(procs=timing.procs, origin=running.base_url)
    with LoadRun(clients, config) as run:
        quiet = measured_phase(run, running, phase)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        url = pattern.format(room=room)
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
    return {"quiet": quiet, "churn": churning, "churner": churn}


def _ceiling(running: Running, timing: Timing) -> dict[str, Any]:
    """The bare ASGI ceiling in P1's shape (SOCKETS sockets, S1's senders): the reference."""
    warm_up(running, timing)
    room = running.room_slugs(1)
    clients = room_clients(running.ws_pattern, room, SOCKETS, timing.s1_senders)
    phase = Phase(timing.s1_rate, timing.p1_duration, timing.warmup, timing.s1_drain)
    with LoadRun(clients, Config(procs=timing.procs, origin=running.base_url)) as run:
        quiet = measured_phase(run, running, phase)
    return {"sockets": SOCKETS, "ceiling": quiet, "p99_ceiling_ms": quiet["latency_ms"]["p99"]}


def p1_presence_churn(running: Running, timing: Timing) -> dict[str, Any]:
    """P1 on a product target (other targets have no presence).

    The same phases run twice: every socket asking for presence (the page), then none (the
    control: the same arrivals and departures, no presence frames), so the cost of presence
    itself is the difference, apart from the cost of 100 connections a second.
    """
    if running.name == "asgi":
        return _ceiling(running, timing)
    if not running.stores_messages:
        return {"skipped": "presence is the product's alone"}
    room = running.room_slugs(1)[0]
    members_seed(running.env, room, SOCKETS + int(CHURN * LIFETIME * 2) + 1)
    warm_up(running, timing)
    out: dict[str, Any] = {"sockets": SOCKETS, "churn_per_s": CHURN}
    out["presence"] = _run_phases(running, timing, room, presence=True)
    out["control"] = _run_phases(running, timing, room, presence=False)
    for name in ("presence", "control"):
        for phase in ("quiet", "churn"):
            out[f"p99_{name}_{phase}_ms"] = out[name][phase]["latency_ms"]["p99"]
            out[f"loss_{name}_{phase}_pct"] = out[name][phase]["loss_pct"]
    return out


class _Sink:
    """A listening socket that only counts what it is handed (the writes are P1's to measure)."""

    frames = 0

    def deliver_frame(self, frame: str, seq: int | None) -> None:
        _Sink.frames += 1


async def _micro_run(users: list[tuple[int, str]], room: Any, seconds: int) -> dict[str, Any]:
    from realtime.presence import TICK, Presence

    presence = Presence()
    presence.task = asyncio.get_running_loop().create_future()  # no ticker: ticks driven here
    for user_id, name in users[:SOCKETS]:
        presence.user_open(user_id, name)
        presence.room_enter(room.pk, room.slug, user_id, _Sink())
    await presence.tick()
    visitors = users[SOCKETS:]
    cpu, inside = [], []
    for _ in range(seconds):
        # CHURN users come, and go a second later: the count, so the frame, changes every tick.
        if inside:
            for user_id, _name in inside:
                presence.room_leave(room.pk, user_id, None)
                presence.user_close(user_id)
            inside = []
        else:
            inside, visitors = visitors[:CHURN], visitors[CHURN:] + visitors[:CHURN]
            for user_id, name in inside:
                presence.user_open(user_id, name)
                presence.room_enter(room.pk, room.slug, user_id, None)
        for view in presence.rooms.values():
            view.sent_at -= TICK  # ticks run back to back here: a second has passed for them
        started = time.process_time()
        await presence.tick()
        cpu.append(time.process_time() - started)
    cpu.sort()
    return {
        "ticks": seconds,
        "cpu_ms_per_tick_median": 1000 * cpu[len(cpu) // 2],
        "cpu_ms_per_tick_max": 1000 * cpu[-1],
        "frames_handed_out": _Sink.frames,
    }


def micro(seconds: int = 20) -> dict[str, Any]:
    """The presence bookkeeping alone, in this process: CPU per tick for the P1 room."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-presence-") as tmp:
        os.environ.update(
            {k: v for k, v in PRODUCT_ENV.items()} | {"SQLITE_PATH": f"{tmp}/db.sqlite3"}
        )
        os.environ.pop("REDIS_URL", None)
        import django

        django.setup()
        from django.core.management import call_command

        from . import seed

        call_command("migrate", verbosity=0)
        seed.users_ensure(SOCKETS + 2 * CHURN)
        seed.rooms_ensure(1)
        members_seed(dict(os.environ), "bench-0", SOCKETS + 2 * CHURN)
        from django.contrib.auth import get_user_model

        from rooms.models import Room

        users = list(get_user_model().objects.order_by("pk").values_list("pk", "username"))
        return asyncio.run(_micro_run(users, Room.objects.get(name="bench-0"), seconds))


def main(argv: list[str] | None = None) -> int:
    """Command line: the ceiling's S1, then P1 on each product target; prints the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=DEFAULT_TARGETS)
    parser.add_argument(
        "--micro", action="store_true", help="only the bookkeeping's CPU per tick, in-process"
    )
    args = parser.parse_args(argv)
    if args.micro:
        print(json.dumps(micro()))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    raise_nofile()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    log_dir = RESULTS / "logs" / f"presence-{stamp}"
    needs = Needs(users=SOCKETS + int(CHURN * LIFETIME * 2) + 10, rooms=1)
    results: dict[str, Any] = {"started": stamp, "targets": {}}
    for name in args.targets:
        with TARGETS[name](needs, log_dir) as running:
            results["targets"][name] = p1_presence_churn(running, FULL)
    ceiling = (results["targets"].get("asgi") or {}).get("p99_ceiling_ms")
    for name, out in results["targets"].items():
        if "presence" in out:
            figures = {k: round(v, 1) for k, v in out.items() if k.startswith(("p99_", "loss_"))}
            if ceiling:
                figures["p99_presence_churn_over_ceiling"] = round(
                    out["p99_presence_churn_ms"] / ceiling, 2
                )
            print(f"{name}: ceiling p99 {ceiling} ms in the same shape; {figures}")
            print(f"  churner: {out['presence']['churner']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    # run-* is ignored by git; presence-latest.json is kept, as latest.* is by bench.run, and
    # written only by the run `make bench` makes (the default targets).
    text = json.dumps(results, indent=1) + "\n"
    (RESULTS / f"run-presence-{stamp}.json").write_text(text)
    if args.targets == DEFAULT_TARGETS:
        (RESULTS / "presence-latest.json").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
