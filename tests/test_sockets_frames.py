"""Frames past ``CHAT_FRAME_MAX_BYTES`` (64 KiB) close the socket with 1009, unparsed (issue 13,
finding 8): by uvicorn itself when started as ``make serve`` starts it (``--ws-max-size``),
and by the application under any server that reads more (daphne, runserver, a bare uvicorn)."""

import asyncio
import json

import pytest
from django.test import override_settings

from .conftest import receive
from .support.clients import RecordedSocket
from .support.server import cookie_header, live_server, room_create, signup

LIMIT = 64 * 1024


def _frame_of(size: int) -> str:
    """A message frame of exactly ``size`` UTF-8 bytes (its body far past 4,000 characters)."""
    head = json.dumps({"type": "message", "body": ""})[:-2]
    return head + "x" * (size - len(head) - 2) + '"}'


async def _sizes_answered(server, session, path: str) -> tuple[str, int | None]:
    url = f"{server.ws_url}/ws{path}"
    socket = await RecordedSocket.open(url, server.url, cookie_header(session))
    await socket.ws.send(_frame_of(LIMIT))  # at the limit: read, parsed, refused politely
    answer = (await socket.next({"error"}))["code"]
    await socket.ws.send(_frame_of(LIMIT + 1))
    assert await socket.ended(10)
    return answer, socket.close_code


@pytest.mark.server
@pytest.mark.parametrize(
    "args",
    [("--ws-max-size", str(LIMIT)), ()],
    ids=["uvicorn-as-make-serve-starts-it", "uvicorn-reading-16-MiB"],
)
def test_a_frame_past_64_KiB_closes_the_socket_with_1009(args):
    with live_server(args=args) as server:
        session = signup(server.url, "alice")
        path = room_create(session, "Big frames")
        answer, code = asyncio.run(_sizes_answered(server, session, path))
        assert (answer, code) == ("body_too_long", 1009)


@pytest.mark.django_db(transaction=True)
@override_settings(CHAT_FRAME_MAX_BYTES=1000)
async def test_the_application_counts_utf8_bytes_not_characters(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    head = '{"type": "message", "body": "'
    fits = head + "é" * ((1000 - len(head) - 2) // 2) + '"}'  # 2 bytes a character
    assert len(fits.encode()) <= 1000
    await socket.send_to(text_data=fits)
    assert (await receive(socket))["type"] == "message"
    too_big = head + "€" * 330 + '"}'  # 359 characters, 1,021 bytes
    await socket.send_to(text_data=too_big)
    assert await socket.receive_output(timeout=3) == {"type": "websocket.close", "code": 1009}
