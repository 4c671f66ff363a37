"""Protocol fuzzing: thousands of random frames at a room socket (the real router, in process,
where the hub can be read; issue 13).

Whatever arrives, the server answers it and keeps the socket open (no close, no handler that
raises: no ``server_error``, nothing logged as an error), a frame it cannot accept gets the
error its fault calls for, it stores a message only for a ``message`` frame it accepted, only
with a clean body (no control character, not invisible only, trimmed, within the limit), and
the socket leaves the hub clean when it closes.
"""

import json
import logging
import re
import time

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.hub import get_hub
from realtime.validation import ClientError, text_clean
from rooms.models import Message

from .conftest import joined, receive

KNOWN = ("message", "edit", "delete", "react", "sync")
EXAMPLES = 150  # of 15 to 50 frames: about 3,500 random frames (and as many pings) a run
UNLIMITED = {
    "CHAT_RATE_PER_SECOND": 1e9,
    "CHAT_RATE_BURST": 1e9,
    "CHAT_SYNC_FRAMES_PER_SECOND": 1e9,
    "CHAT_SYNC_FRAMES_BURST": 1e9,
}

_controls = st.characters(max_codepoint=0x9F)
_invisible = st.sampled_from(list("\u200b\u200c\u200d\u2060\ufeff\u00ad\u3164\u2800\u202e \t\n\r"))
_char = st.one_of(st.characters(exclude_categories=("Cs",)), _controls, _invisible)
plain = st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=30)
text = st.one_of(
    plain,
    st.text(_char, max_size=40),
    st.sampled_from(["hello", " padded ", "x" * 4000, "x" * 4001, "👍", "👨‍👩‍👧", "a\x00b"]),
)
ints = st.one_of(st.integers(0, 40), st.integers(-(2**80), 2**80), st.just(2**63))
scalar = st.one_of(st.none(), st.booleans(), st.floats(), ints, text)
anything = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)
fields = {
    "body": text | anything,
    "id": ints | anything,
    "after": ints | anything,
    "reply_to": ints | anything,
    "emoji": st.sampled_from(["👍", "🎉", "👍🏽", "no"]) | anything,
    "on": st.booleans() | anything,
    "client_id": st.sampled_from(["k1", "k2", "k-3"]) | text,
}
objects = st.fixed_dictionaries(
    {"type": st.sampled_from(KNOWN) | st.text(max_size=8) | anything},
    optional=fields,
)
# Frames a client of the page would send, with fields in range, so changes get stored too.
wellformed = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("message"), "body": plain},
        optional={k: fields[k] for k in ("client_id", "reply_to")},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(KNOWN[1:]), "id": st.integers(1, 60), "body": plain},
        optional={"emoji": fields["emoji"], "on": st.booleans(), "after": st.integers(0, 60)},
    ),
)
frames = st.one_of(
    wellformed.map(lambda o: ("text", json.dumps(o))),
    objects.map(lambda o: ("text", json.dumps(o))),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30).map(lambda t: ("text", t)),
    st.binary(max_size=20).map(lambda b: ("bytes", b)),
)


def expected_error(kind: str, data) -> str | None:
    """The error a frame must get for its shape alone (None: it depends on the room)."""
    if kind == "bytes":
        return "binary_frame"
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "invalid_json"
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return "invalid_frame"
    if frame["type"] not in KNOWN:
        return "unknown_type"
    return None


def clean_body(frame: dict) -> str | None:
    """The body a ``message`` frame would store, or None if it must be refused for it."""
    body = frame.get("body")
    if not isinstance(body, str):
        return None
    try:
        return text_clean(body, max_length=4000)
    except ClientError:
        return None


async def answers_until_ping(socket, n: int) -> list[dict]:
    """Send a ping (a frame of an unknown type) and return the frames that came before its
    answer; fails if the socket closes."""
    marker = f"ping-{n}"
    await socket.send_json_to({"type": marker})
    frames = []
    while True:
        frame = await receive(socket, timeout=10)
        if frame.get("code") == "unknown_type" and marker in frame["detail"]:
            return frames
        frames.append(frame)


@sync_to_async
def stored_bodies(room) -> list[str]:
    return list(Message.objects.filter(room=room, deleted=None).values_list("body", flat=True))


@sync_to_async
def stored_count(room) -> int:
    return Message.objects.filter(room=room).count()


@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(frames, min_size=15, max_size=50))
async def test_random_frames_are_answered_contained_and_store_only_clean_messages(
    connect, alice, room, caplog, batch
):
    started = time.monotonic()
    caplog.set_level(logging.WARNING)
    hub_before = get_hub().subscriber_count()
    used_keys = {k for k in await sync_to_async(_client_ids)(room) if k}
    count_before = await stored_count(room)
    new_messages = 0
    with override_settings(**UNLIMITED):
        socket = await connect(f"/ws/rooms/{room.slug}/", alice)
        await joined(socket)
        for n, (kind, data) in enumerate(batch):
            # send_input: the communicator's send_to refuses an empty frame, a client may not.
            await socket.send_input({"type": "websocket.receive", kind: data})
            answers = await answers_until_ping(socket, n)
            errors = [a["code"] for a in answers if a["type"] == "error"]
            assert "server_error" not in errors, (data, answers)
            must = expected_error(kind, data)
            if must is not None:
                assert must in errors, (data, answers)
                continue
            frame = orjson.loads(data)
            if frame["type"] == "sync" and not errors:
                assert any(a["type"] == "synced" for a in answers), (data, answers)
            if frame["type"] == "message":
                if clean_body(frame) is None:
                    assert errors, (data, answers)  # a body that must not be stored
                key = frame.get("client_id")
                if not errors and not (isinstance(key, str) and key in used_keys):
                    new_messages += 1
                if not errors and isinstance(key, str):
                    used_keys.add(key)
        await socket.disconnect()
    assert await stored_count(room) - count_before == new_messages
    for body in await stored_bodies(room):
        assert body == text_clean(body, max_length=4000)  # clean, trimmed, within the limit
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\r]", body)
    assert get_hub().subscriber_count() == hub_before
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert time.monotonic() - started < 60  # one example: bounded


def _client_ids(room) -> list[str]:
    return list(Message.objects.filter(room=room).values_list("client_id", flat=True))
