"""A real cluster: redis-server, PostgreSQL, two uvicorn nodes of two workers, nginx in front.

Every client talks to nginx (configured by deploy/nginx.conf) with a session cookie obtained by
logging in over HTTP, exactly as a browser behind the load balancer would.
"""

import asyncio
import collections
import concurrent.futures
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from .support.clients import ChatClient, history
from .support.server import (
    LiveServer,
    cookie_header,
    free_port,
    manage,
    room_create,
    server_env,
    signup,
)
from .support.services import (
    migrate,
    nginx,
    node_env,
    node_start,
    postgres_server,
    redis_server,
)

pytestmark = pytest.mark.server

USERS = 6
# Per worker process; the test checks the cluster holds no more, whatever its socket count.
DB_POOL_MAX = 4


class Cluster:
    def __init__(self, redis, postgres, nodes, proxy, workdir):
        self.redis = redis
        self.postgres = postgres
        self.nodes = nodes
        self.proxy = proxy
        self.workdir = workdir
        self.sessions: list[httpx.Client] = []

    def node_of(self, pid: int) -> str:
        for name, node in self.nodes.items():
            if pid in node.worker_pids():
                return name
        raise AssertionError(f"pid {pid} is no worker of a running node")

    def wait_routed(self, name: str, timeout: float = 30) -> None:
        """Wait until nginx sends requests to node ``name`` again (it benches a failed node)."""
        pids = self.nodes[name].worker_pids()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with httpx.Client(timeout=5) as client:
                served_by = client.get(self.proxy.url + "/healthz").headers.get("x-served-by", "")
            if served_by and int(served_by.rsplit(":", 1)[1]) in pids:
                return
            time.sleep(0.2)
        raise AssertionError(f"nginx did not route to node {name} within {timeout}s")

    def logs(self) -> str:
        """What the nodes said, without access lines (for failure messages)."""
        return "\n".join(
            f"--- {name}\n"
            + "\n".join(
                line
                for line in node.log().splitlines()
                if not line.startswith("INFO:") and "UserWarning" not in line
            )[-12000:]
            for name, node in self.nodes.items()
        )

    def client(self, i: int, path: str) -> ChatClient:
        session = self.sessions[i % len(self.sessions)]
        return ChatClient(
            name=f"client-{i}",
            ws_base=self.proxy.ws_url,
            origin=self.proxy.url,
            path=path,
            cookie=cookie_header(session),
            user=f"user{i % len(self.sessions)}",
        )


@pytest.fixture(scope="module")
def cluster():
    with (
        redis_server() as redis,
        postgres_server() as postgres,
        tempfile.TemporaryDirectory(prefix="chat-cluster-") as tmp,
    ):
        env = node_env(redis_url=redis.url, database_url=postgres.url, DB_POOL_MAX=str(DB_POOL_MAX))
        migrate(env)
        nodes = {"a": node_start(env, Path(tmp), "a"), "b": node_start(env, Path(tmp), "b")}
        try:
            for node in nodes.values():
                node.wait_for_workers()
            upstreams = [f"127.0.0.1:{node.port}" for node in nodes.values()]
            with nginx(upstreams) as proxy:
                running = Cluster(redis, postgres, nodes, proxy, Path(tmp))
                with concurrent.futures.ThreadPoolExecutor(USERS) as pool:
                    running.sessions = list(
                        pool.map(lambda i: signup(proxy.url, f"user{i}"), range(USERS))
                    )
                yield running
        finally:
            for node in nodes.values():
                node.stop()


async def open_clients(cluster: Cluster, path: str, count: int) -> list[ChatClient]:
    clients = [cluster.client(i, path) for i in range(count)]
    await asyncio.gather(*(client.start() for client in clients))
    return clients


async def open_until_every_worker_serves(cluster: Cluster, path: str, at_least: int, workers):
    """Open clients (at least ``at_least``) until each of ``workers`` serves some of them.

    The kernel, not uvicorn, picks which worker of a node accepts a connection, and it does
    not take turns, so this keeps opening (in small batches, bounded in time).
    """
    clients = await open_clients(cluster, path, at_least)
    deadline = time.monotonic() + 20
    while {c.pid for c in clients} < set(workers) and time.monotonic() < deadline:
        more = [cluster.client(len(clients) + i, path) for i in range(4)]
        await asyncio.gather(*(client.start() for client in more))
        clients += more
        await asyncio.sleep(0.2)
    spread = collections.Counter(c.pid for c in clients)
    assert set(spread) == set(workers), f"clients per worker: {dict(spread)}"
    return clients


async def send_paced(
    senders: list[ChatClient], count: int, rate: float, prefix: str, start: int = 0
) -> None:
    """Send ``count`` messages round-robin from ``senders`` at ``rate`` per second in total."""
    for i in range(start, start + count):
        await senders[i % len(senders)].send(f"{prefix} {i}")
        await asyncio.sleep(1 / rate)


async def send_first(sender: ChatClient, clients: list[ChatClient], prefix: str) -> None:
    """Send a room's first message and wait until every client has it.

    A worker puts a room's frames in seq order from the first one it sees (docs/scaling.md),
    so the flow that follows can come from every worker at once.
    """
    await sender.send(f"{prefix} 0")
    assert all(await asyncio.gather(*(c.wait_for(1, timeout=20) for c in clients)))


async def close_all(clients: list[ChatClient]) -> None:
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def stored(cluster: Cluster, path: str) -> list[dict]:
    cookie = cookie_header(cluster.sessions[0])
    return asyncio.run(history(cluster.proxy.ws_url, cluster.proxy.url, path, cookie))


def as_triples(frames: list[dict]) -> list[tuple[int, int, str]]:
    return [(f["seq"], f["id"], f["body"]) for f in frames]


def test_clients_on_every_worker_receive_every_message_once_in_order(cluster):
    path = room_create(cluster.sessions[0], "Cluster all workers")
    workers = [pid for node in cluster.nodes.values() for pid in node.worker_pids()]
    assert len(workers) == 4
    total = 40

    async def scenario():
        clients = await open_until_every_worker_serves(cluster, path, 24, workers)
        spread = collections.Counter(c.pid for c in clients)
        # Senders on different workers, so messages enter the cluster everywhere.
        senders = [next(c for c in clients if c.pid == pid) for pid in workers]
        await send_first(senders[0], clients, "hello")
        await send_paced(senders, total - 1, rate=20, prefix="hello", start=1)
        arrived = await asyncio.gather(*(c.wait_for(total, timeout=30) for c in clients))
        held = await asyncio.to_thread(cluster.postgres.connections)
        await close_all(clients)
        return clients, arrived, spread, held

    clients, arrived, spread, held = asyncio.run(scenario())
    assert all(arrived), cluster.logs()
    # No connection per socket: each worker borrows from its own small pool.
    assert 1 <= held <= len(workers) * DB_POOL_MAX < len(clients), (held, len(clients))
    messages = stored(cluster, path)
    assert [m["seq"] for m in messages] == list(range(1, total + 1))
    assert len({m["id"] for m in messages}) == total
    for client in clients:
        # Exactly once and in order: the raw stream, not a de-duplicated view of it.
        assert as_triples(client.raw) == as_triples(messages), client.name
        assert [f["id"] for f in client.raw] == sorted(f["id"] for f in client.raw)
        assert client.reconnections == 0
    print(f"clients per worker pid: {dict(spread)}; PostgreSQL connections: {held}")


def test_notifications_from_the_command_reach_clients_on_every_worker(cluster):
    path = room_create(cluster.sessions[2], "Cluster notices")
    workers = [pid for node in cluster.nodes.values() for pid in node.worker_pids()]
    env = cluster.nodes["a"].env

    def received(text: str):
        return lambda client: any(n["text"] == text for n in client.notifications)

    async def scenario():
        clients = await open_until_every_worker_serves(cluster, path, 12, workers)
        # The command runs in a process of its own, like cron or an operator's shell.
        await asyncio.to_thread(manage, env, "notifications", "Maintenance at 18:00")
        everyone = await asyncio.gather(
            *(c.wait_until(received("Maintenance at 18:00"), 15) for c in clients)
        )
        command = ["notifications", "For two", "--users", "user0", "user3"]
        await asyncio.to_thread(manage, env, *command)
        chosen = [c for c in clients if c.user in ("user0", "user3")]
        await asyncio.gather(*(c.wait_until(received("For two"), 15) for c in chosen))
        await asyncio.sleep(1)  # anything misrouted would have arrived by now
        await close_all(clients)
        return clients, everyone

    clients, everyone = asyncio.run(scenario())
    assert all(everyone), cluster.logs()
    for client in clients:
        texts = [n["text"] for n in client.notifications]
        expected = ["Maintenance at 18:00"]
        if client.user in ("user0", "user3"):
            expected.append("For two")
        assert texts == expected, (client.name, client.user, client.pid)


def test_killing_a_node_moves_its_clients_to_the_other_without_loss_or_duplicates(cluster):
    path = room_create(cluster.sessions[0], "Cluster node loss")
    victim, survivor = cluster.nodes["a"], cluster.nodes["b"]
    total = 60

    async def scenario():
        clients = await open_until_every_worker_serves(
            cluster, path, 16, victim.worker_pids() + survivor.worker_pids()
        )
        on_victim = [c for c in clients if c.pid in victim.worker_pids()]
        senders = [c for c in clients if c.pid in survivor.worker_pids()][:2]
        assert on_victim and len(senders) == 2
        await send_first(senders[0], clients, "flow")
        sending = asyncio.create_task(
            send_paced(senders, total - 1, rate=12, prefix="flow", start=1)
        )
        await asyncio.sleep(1.5)
        killed = victim.kill_all()
        await sending
        arrived = await asyncio.gather(*(c.wait_for(total, timeout=40) for c in clients))
        await close_all(clients)
        return clients, on_victim, arrived, killed

    try:
        clients, on_victim, arrived, killed = asyncio.run(scenario())
        assert all(arrived), cluster.logs()
        messages = stored(cluster, path)
        assert [m["seq"] for m in messages] == list(range(1, total + 1))
        for client in clients:
            # Catch-up with ?after=<seq> plus live frames: none missing, none twice.
            assert as_triples(client.raw) == as_triples(messages), client.name
        for client in on_victim:
            assert client.reconnections >= 1, client.name
            assert client.pid in cluster.nodes["b"].worker_pids(), client.served_by
            assert client.pid not in killed
    finally:
        # Bring the node back for the tests that follow (same port, so nginx finds it).
        victim.start()
        victim.wait_for_workers()
        cluster.wait_routed("a")


def test_restarting_redis_resumes_live_delivery_and_resyncs_the_gap(cluster):
    path = room_create(cluster.sessions[1], "Cluster redis restart")
    workers = [pid for node in cluster.nodes.values() for pid in node.worker_pids()]
    before, during, after = 15, 20, 10

    async def scenario():
        clients = await open_until_every_worker_serves(cluster, path, 12, workers)
        senders = clients[:2]
        await send_paced(senders, before, rate=10, prefix="before")
        assert all(await asyncio.gather(*(c.wait_for(before, 20) for c in clients)))
        sending = asyncio.create_task(send_paced(senders, during, rate=10, prefix="during"))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.redis.restart, 1.0)
        await sending
        # Live delivery must come back by itself: each new message reaches every client
        # promptly, without waiting for a later message to reveal a gap.
        await asyncio.sleep(2)
        latencies = []
        for i in range(after):
            started = time.monotonic()
            await senders[i % 2].send(f"after {i}")
            seq = before + during + i + 1
            arrived = await asyncio.gather(*(c.wait_for(seq, 10) for c in clients))
            pairs = zip(clients, arrived, strict=True)
            missing = [(c.pid, c.last_seq) for c, ok in pairs if not ok]
            assert not missing, f"seq {seq} missing on {missing}\n{cluster.logs()}"
            latencies.append(time.monotonic() - started)
        await close_all(clients)
        return clients, latencies

    clients, latencies = asyncio.run(scenario())
    messages = stored(cluster, path)
    total = before + during + after
    assert [m["seq"] for m in messages] == list(range(1, total + 1))
    for client in clients:
        have = [client.messages[seq] for seq in sorted(client.messages)]
        assert as_triples(have) == as_triples(messages), client.name
        # Frames repeated by a resync are dropped by seq, as the page does.
        assert client.reconnections == 0, client.name
    assert max(latencies) < 3, latencies
    # The workers noticed the lost live path by themselves and had their sockets resync.
    for node in cluster.nodes.values():
        assert "live path recovered" in node.new_log(), node.new_log()


def test_several_workers_without_redis_refuse_to_start():
    """The in-memory layer cannot cross processes: --workers 2 without REDIS_URL must not run."""
    with tempfile.TemporaryDirectory(prefix="chat-no-redis-") as tmp:
        env = server_env(SQLITE_PATH=str(Path(tmp) / "db.sqlite3"))
        manage(env, "migrate", "--noinput")
        server = LiveServer(free_port(), env, Path(tmp) / "server.log", workers=2)
        server.start()
        try:
            server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"uvicorn --workers 2 kept running without REDIS_URL:\n{server.log()}")
        finally:
            server.stop()
        log = server.log()
        assert "Refusing to start" in log, log
        assert "set REDIS_URL" in log, log
        assert "Application startup failed" in log, log
