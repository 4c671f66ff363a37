"""A socket's Origin must be one this server serves: scheme, host and port, as Django's CSRF check
decides for a form post (issue 13, finding 6)."""

import asyncio
import contextlib
import tempfile
from pathlib import Path

import pytest
import websockets
from django.test import override_settings

from .conftest import receive
from .support.clients import RecordedSocket
from .support.server import cookie_header, live_server, manage, room_create, signup
from .support.services import nginx, node_env, node_start

TRUSTED = "https://chat.example.com"


@pytest.fixture(scope="module")
def site():
    with live_server(CSRF_TRUSTED_ORIGINS=TRUSTED) as server:
        session = signup(server.url, "alice")
        yield server, session, room_create(session, "Origins")


async def _handshake(server, session, path: str, origin: str | None) -> int:
    """The HTTP status of the handshake (101 when the socket opened)."""
    try:
        async with websockets.connect(
            f"{server.ws_url}/ws{path}",
            additional_headers={"Cookie": cookie_header(session)},
            origin=origin,
            open_timeout=20,
        ):
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.server
@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port of the same host
        "https://127.0.0.1",  # another scheme (and port)
        "http://127.0.0.1",  # the default port is another port
        "http://localhost:{port}",  # an allowed host, but not the one the socket asked for
        "http://evil.example",
        "null",
        None,
    ],
)
def test_a_socket_from_an_origin_we_do_not_serve_is_refused(site, origin):
    server, session, path = site
    origin = origin and origin.format(port=server.port)
    for where in (path, "/notifications/"):
        assert asyncio.run(_handshake(server, session, where, origin)) == 403, (where, origin)


@pytest.mark.server
@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", TRUSTED])
def test_the_same_origin_and_trusted_origins_are_accepted(site, origin):
    server, session, path = site
    origin = origin.format(port=server.port)

    async def scenario():
        url = f"{server.ws_url}/ws{path}?after=0"
        socket = await RecordedSocket.open(url, origin, cookie_header(session))
        await socket.next({"synced"})
        await socket.send(type="message", body=f"from {origin}")
        assert (await socket.next({"message"}))["body"] == f"from {origin}"
        await socket.close()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("behind_tls_proxy", "origin", "accepted"),
    [
        (True, "https://localhost", True),
        (True, "http://localhost", False),
        # Without BEHIND_TLS_PROXY the header is anyone's to send and counts for nothing.
        (False, "https://localhost", False),
        (False, "http://localhost", True),
    ],
)
async def test_behind_a_tls_proxy_the_origin_is_https(
    alice, room, connect, behind_tls_proxy, origin, accepted
):
    proxy = ("HTTP_X_FORWARDED_PROTO", "https") if behind_tls_proxy else None
    with override_settings(SECURE_PROXY_SSL_HEADER=proxy):
        socket = await connect(
            f"/ws/rooms/{room.slug}/",
            alice,
            origin=origin,
            expect_accept=False,
            headers=[(b"x-forwarded-proto", b"https")],
        )
        assert socket.accepted == accepted
        if accepted:
            await socket.send_json_to({"type": "message", "body": "through the proxy"})
            assert (await receive(socket))["body"] == "through the proxy"


@pytest.mark.server
def test_behind_nginx_the_page_origin_is_accepted():
    """deploy/nginx.conf passes the Host with its port, so the page's own origin matches."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chat-origin-")))
        env = node_env(SQLITE_PATH=str(tmp / "db.sqlite3"))
        manage(env, "migrate", "--noinput")
        node = node_start(env, tmp, "node", workers=1)
        stack.callback(node.stop)
        proxy = stack.enter_context(nginx([f"127.0.0.1:{node.port}"]))
        session = signup(proxy.url, "alice")
        path = room_create(session, "Behind nginx")

        async def scenario():
            url = f"{proxy.ws_url}/ws{path}?after=0"
            socket = await RecordedSocket.open(url, proxy.url, cookie_header(session))
            await socket.send(type="message", body="through nginx")
            assert (await socket.next({"message"}))["body"] == "through nginx"
            await socket.close()
            return await _handshake(proxy, session, path, "http://127.0.0.1:9999")

        assert asyncio.run(scenario()) == 403


def test_the_cached_decision_follows_every_header_the_rule_reads():
    """Decisions are cached per origin, host and proxy host/port (realtime.origin): two
    handshakes that differ only there get their own answers, and a client address does not."""
    from realtime.origin import origin_allowed

    def scope(forwarded_host: bytes, client: bytes) -> dict:
        return {
            "type": "websocket",
            "scheme": "ws",
            "server": ("10.0.0.5", 8000),
            "headers": [
                (b"host", b"10.0.0.5:8000"),
                (b"origin", b"http://chat.example.com"),
                (b"x-forwarded-host", forwarded_host),
                (b"x-forwarded-for", client),
            ],
        }

    with override_settings(USE_X_FORWARDED_HOST=True, ALLOWED_HOSTS=["*"]):
        assert origin_allowed(scope(b"chat.example.com", b"192.0.2.1"))
        assert origin_allowed(scope(b"chat.example.com", b"192.0.2.2"))
        assert not origin_allowed(scope(b"evil.example", b"192.0.2.1"))
    with override_settings(USE_X_FORWARDED_HOST=False, ALLOWED_HOSTS=["*"]):
        # The proxy's header no longer counts: the socket's own host is not the origin's.
        assert not origin_allowed(scope(b"chat.example.com", b"192.0.2.1"))
