"""The real server (uvicorn) on a free port, two real WebSocket clients with real sessions."""

import asyncio
import json

import pytest
import websockets

from .support.server import cookie_header, room_create, signup

pytestmark = pytest.mark.server


async def open_socket(server, client, path: str, after: int | None = None):
    query = "" if after is None else f"?after={after}"
    return await websockets.connect(
        f"{server.ws_url}/ws{path}{query}",
        additional_headers={"Cookie": cookie_header(client)},
        origin=server.url,
        open_timeout=10,
    )


async def next_frame(socket, kind: str = "message") -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
        if frame["type"] == kind:
            return frame


def test_two_users_chat_live_through_uvicorn(server):
    alice = signup(server.url, "alice")
    bob = signup(server.url, "bob")
    path = room_create(alice, "Lobby")
    assert path == "/rooms/lobby/"

    async def chat():
        a = await open_socket(server, alice, path)
        b = await open_socket(server, bob, path)
        await a.send(json.dumps({"type": "message", "body": "hi bob"}))
        for socket in (a, b):
            frame = await next_frame(socket)
            assert (frame["user"], frame["body"], frame["seq"]) == ("alice", "hi bob", 1)
        await b.send(json.dumps({"type": "message", "body": "hi alice"}))
        for socket in (a, b):
            frame = await next_frame(socket)
            assert (frame["user"], frame["body"], frame["seq"]) == ("bob", "hi alice", 2)
        await a.close()
        await b.close()

    asyncio.run(chat())
    page = bob.get(path).text
    assert "hi bob" in page and "hi alice" in page


def test_reconnect_with_after_replays_exactly_the_missed_messages(server):
    carol = signup(server.url, "carol")
    dave = signup(server.url, "dave")
    path = room_create(carol, "Standup")

    async def scenario():
        c = await open_socket(server, carol, path)
        d = await open_socket(server, dave, path)
        await c.send(json.dumps({"type": "message", "body": "before"}))
        seen = (await next_frame(d))["seq"]
        await d.close()
        for i in range(3):
            await c.send(json.dumps({"type": "message", "body": f"missed {i}"}))
            await next_frame(c)
        d = await open_socket(server, dave, path, after=seen)
        frames = []
        while True:
            frame = json.loads(await asyncio.wait_for(d.recv(), timeout=10))
            if frame["type"] == "synced":
                break
            frames.append(frame)
        assert [f["body"] for f in frames] == ["missed 0", "missed 1", "missed 2"]
        assert [f["seq"] for f in frames] == [2, 3, 4]
        await c.send(json.dumps({"type": "message", "body": "after"}))
        assert (await next_frame(d))["seq"] == 5
        await c.close()
        await d.close()

    asyncio.run(scenario())


def test_anonymous_and_foreign_origin_sockets_are_refused(server):
    erin = signup(server.url, "erin")
    path = room_create(erin, "Private")

    async def scenario():
        anonymous = await websockets.connect(f"{server.ws_url}/ws{path}", origin=server.url)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(anonymous.recv(), timeout=10)
        assert closed.value.rcvd.code == 4401
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(
                f"{server.ws_url}/ws{path}",
                additional_headers={"Cookie": cookie_header(erin)},
                origin="https://evil.example",
            )

    asyncio.run(scenario())
