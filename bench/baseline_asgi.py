"""The ceiling: a bare ASGI broadcast app with in-process fan-out and no Django.

Serve with ``uvicorn bench.baseline_asgi:app`` (one process). Each room keeps the ``send``
callables of its local sockets; a message is serialised once and written to every one of them.
Frames have the product's shapes (docs/protocol.md) so one load generator serves every target.
"""

import itertools
from datetime import UTC, datetime
from typing import Any

import orjson

PREFIX = "/ws/rooms/"

_rooms: dict[str, set[Any]] = {}
_seqs: dict[str, int] = {}
_ids = itertools.count(1)
_users = itertools.count(1)


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every HTTP request with a short 200, so the launcher can see the server is up."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _frame(slug: str, user: str, body: str) -> str:
    seq = _seqs[slug] = _seqs.get(slug, 0) + 1
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    payload = {
        "type": "message",
        "id": next(_ids),
        "seq": seq,
        "room": slug,
        "user": user,
        "body": body,
        "created": created,
    }
    return orjson.dumps(payload).decode()


async def _broadcast(slug: str, frame: str) -> None:
    message = {"type": "websocket.send", "text": frame}
    for member in tuple(_rooms.get(slug, ())):
        try:
            await member(message)
        except Exception:
            # The socket closed under us; its own receive loop removes it.
            _rooms.get(slug, set()).discard(member)


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path: str = scope["path"]
    slug = path[len(PREFIX) :].strip("/")
    if not path.startswith(PREFIX) or not slug or "/" in slug:
        await send({"type": "websocket.close", "code": 4404})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    user = f"anon{next(_users)}"
    members = _rooms.setdefault(slug, set())
    members.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                continue
            try:
                frame = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(frame, dict) and frame.get("type") == "message":
                await _broadcast(slug, _frame(slug, user, str(frame.get("body", ""))))
    finally:
        members.discard(send)
        if not members:
            _rooms.pop(slug, None)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI application."""
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
