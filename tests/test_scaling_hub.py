"""The hub's defences for a live path that spans processes: order, gaps, lost memberships."""

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer

from realtime import hub as hub_module
from realtime.hub import Hub

pytestmark = pytest.mark.asyncio


class Recorder:
    """A subscriber that remembers what the hub handed it."""

    def __init__(self) -> None:
        self.seqs: list[int | None] = []
        self.resyncs = 0

    def deliver_frame(self, frame: str, seq: int | None) -> None:
        self.seqs.append(seq)

    def deliver_event(self, payload: dict[str, Any]) -> None:
        pass

    def resync(self) -> None:
        self.resyncs += 1


def frame(seq: int, group: str = "room-1") -> dict[str, Any]:
    return {"type": "hub.frame", "group": group, "frame": "{}", "seq": seq}


async def subscribed() -> tuple[Hub, Recorder]:
    hub = Hub()
    recorder = Recorder()
    await hub.subscribe("room-1", recorder)
    return hub, recorder


def stop(hub: Hub) -> None:
    for task in (hub._reader, hub._refresher, hub._watchdog):
        task.cancel()


async def test_frames_stored_by_two_processes_reach_sockets_in_seq_order():
    hub, recorder = await subscribed()
    for seq in (1, 3, 2, 5, 4, 6):
        hub.dispatch_ordered(frame(seq))
    assert recorder.seqs == [1, 2, 3, 4, 5, 6]
    assert recorder.resyncs == 0
    stop(hub)


async def test_a_frame_that_never_comes_is_given_up_and_the_sockets_resync(monkeypatch):
    monkeypatch.setattr(hub_module, "REORDER_WAIT", 0.05)
    hub, recorder = await subscribed()
    hub.dispatch_ordered(frame(1))
    hub.dispatch_ordered(frame(3))
    hub.dispatch_ordered(frame(4))
    assert recorder.seqs == [1]
    await asyncio.sleep(0.2)
    assert recorder.seqs == [1, 3, 4]
    assert recorder.resyncs == 1
    hub.dispatch_ordered(frame(5))
    assert recorder.seqs == [1, 3, 4, 5]
    stop(hub)


async def test_a_hub_whose_memberships_vanish_rejoins_and_resyncs_by_itself(monkeypatch):
    """As when Redis restarts: the reader stays up, but every group forgot this process."""
    monkeypatch.setattr(hub_module, "PROBE_SECONDS", 0.05)
    monkeypatch.setattr(hub_module, "PROBE_TIMEOUT", 0.2)
    hub, recorder = await subscribed()
    layer = get_channel_layer()
    await asyncio.sleep(0.3)
    assert hub.recoveries == 0
    await layer.group_discard("room-1", hub.channel)
    await layer.group_discard(hub.probe_group, hub.channel)
    for _ in range(40):
        await asyncio.sleep(0.05)
        if hub.recoveries:
            break
    assert hub.recoveries == 1
    assert recorder.resyncs == 1
    # Membership is back: the room's events flow again.
    await layer.group_send("room-1", frame(1))
    for _ in range(40):
        await asyncio.sleep(0.05)
        if recorder.seqs:
            break
    assert recorder.seqs == [1]
    stop(hub)
