"""Measure channels_redis' two layers the way realtime.hub uses them (docs/scaling.md).

One private redis-server on 127.0.0.1; PROCESSES receiver processes, each with one channel in
one group (as each worker's hub is); a sender that group_sends. For each layer it reports:
group_send throughput, end-to-end latency at a steady rate, Redis commands per message, and
what the receivers lose when Redis drops their connections mid-stream.

    .venv/bin/python scripts/measure_layers.py [--processes 4] [--messages 2000]

Every loop is bounded in count and time; everything it starts it stops.
"""

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GROUP = "room-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def layer_make(kind: str, url: str):
    """The layer as chatproject.settings configures it for REDIS_URL."""
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    host = {
        "address": url,
        "socket_timeout": 15.0,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "max_connections": 100,
        "socket_keepalive": True,
    }
    if kind == "core":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from realtime.layers import RedisChannelLayer

        return RedisChannelLayer(hosts=[host], capacity=10_000, expiry=60, group_expiry=90)
    from channels_redis.pubsub import RedisPubSubChannelLayer

    return RedisPubSubChannelLayer(hosts=[host])


def receiver(kind: str, url: str, ready, results, stop_after: float) -> None:
    """A worker's hub in miniature: one channel in the group, reading until told to stop."""

    async def main() -> None:
        layer = layer_make(kind, url)
        channel = await layer.new_channel()
        await layer.group_add(GROUP, channel)
        ready.put(os.getpid())
        latencies: dict[str, list[float]] = {}
        errors = 0
        deadline = time.monotonic() + stop_after
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 1)
            except TimeoutError:
                continue
            except Exception:
                errors += 1
                await asyncio.sleep(0.1)
                try:
                    await layer.group_add(GROUP, channel)
                except Exception:
                    pass
                continue
            if message.get("phase") == "stop":
                break
            latencies.setdefault(message["phase"], []).append(time.time() - message["sent"])
        results.put({"latencies": latencies, "errors": errors})

    asyncio.run(main())


def redis_commands(port: int) -> int:
    import redis

    client = redis.Redis(port=port)
    try:
        stats = client.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))
    finally:
        client.close()


def redis_client_kill(port: int) -> None:
    """Drop every other client connection, as a Redis failover or network blip does."""
    import redis

    client = redis.Redis(port=port)
    try:
        client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        client.close()


async def send(layer, phase: str, count: int, rate: float | None) -> tuple[float, int]:
    """Send ``count`` messages (at ``rate`` per second, or as fast as possible)."""
    failures = 0
    started = time.monotonic()
    for i in range(count):
        try:
            await layer.group_send(
                GROUP, {"type": "hub.frame", "phase": phase, "n": i, "sent": time.time()}
            )
        except Exception:
            failures += 1
        if rate:
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    return time.monotonic() - started, failures


def measure(kind: str, processes: int, messages: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="measure-layers-"))
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir)]
    redis_server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    workers = [
        context.Process(target=receiver, args=(kind, url, ready, results, 120))
        for _ in range(processes)
    ]
    try:
        time.sleep(0.3)
        for worker in workers:
            worker.start()
        for _ in workers:
            ready.get(timeout=30)

        async def drive() -> dict:
            layer = layer_make(kind, url)
            out: dict = {}
            before = redis_commands(port)
            elapsed, _ = await send(layer, "burst", messages, None)
            out["group_send_per_s"] = messages / elapsed
            await asyncio.sleep(1)
            out["redis_commands_per_message"] = (redis_commands(port) - before) / messages
            await send(layer, "steady", messages // 2, 200)
            await asyncio.sleep(1)
            # Connections dropped mid-stream: 1000 messages at 500/s, killed 3 times.
            loop = asyncio.get_running_loop()
            killers = [loop.call_later(t, redis_client_kill, port) for t in (0.5, 1.0, 1.5)]
            _, out["blip_send_failures"] = await send(layer, "blip", 1000, 500)
            for killer in killers:
                killer.cancel()
            await asyncio.sleep(3)
            await send(layer, "stop", 1, None)
            return out

        out = asyncio.run(drive())
        collected = [results.get(timeout=60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
        redis_server.terminate()
        redis_server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    steady = sorted(x for c in collected for x in c["latencies"].get("steady", []))
    out["steady_delivered"] = f"{len(steady)}/{processes * (messages // 2)}"
    out["steady_p50_ms"] = 1000 * statistics.median(steady)
    out["steady_p99_ms"] = 1000 * steady[int(0.99 * (len(steady) - 1))]
    burst = sum(len(c["latencies"].get("burst", [])) for c in collected)
    out["burst_delivered"] = f"{burst}/{processes * messages}"
    blip = [len(c["latencies"].get("blip", [])) for c in collected]
    out["blip_delivered_per_process"] = f"{blip} of 1000"
    out["receiver_errors"] = sum(c["errors"] for c in collected)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    for kind in ("core", "pubsub"):
        result = measure(kind, args.processes, args.messages)
        print(kind, {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})


if __name__ == "__main__":
    main()
