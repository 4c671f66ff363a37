"""Per-process fan-out: each worker subscribes once per group and writes to its own sockets.

The Channels tutorial gives every socket its own channel and has the layer deliver each message
once per socket. Here a worker process joins each group with one channel of its own; a single
reader task receives each event once and hands the already-serialised frame to every local
socket in the group. The layer's work per message then grows with the number of processes, not
with the number of sockets (the design of Centrifugo's node hub and Zulip's event queues).
Events stored by this process do not come back through the layer: ``realtime.events`` hands
them to ``dispatch_ordered`` at once, and the layer leaves this process out of their groups.
"""

import asyncio
import contextlib
import logging
import random
import uuid
from typing import Any, Protocol

from channels.layers import get_channel_layer

from .loops import per_loop
from .stopping import stopping

logger = logging.getLogger(__name__)

# Group memberships expire in the layer (channels_redis drops them after ``group_expiry``, and a
# restarted Redis forgets them at once), so each hub renews its own on this period.
REFRESH_SECONDS = 15.0
# Every PROBE_SECONDS each hub sends a probe to a group of its own, along the same path as the
# rooms' events; one that has not come back within PROBE_TIMEOUT means the live path lost
# events (e.g. Redis restarted and forgot every membership while the reader stayed connected).
PROBE_SECONDS = 2.0
PROBE_TIMEOUT = 6.0
# Frames of one group carry consecutive seqs, but two processes that store seq 22 and 23 send
# them concurrently, so 23 may arrive first. A frame ahead of the next expected seq waits this
# long for the missing ones; then the hub passes on what it holds and has the sockets resync.
REORDER_WAIT = 1.0


class Subscriber(Protocol):
    """A local socket that receives a group's events."""

    def deliver_frame(self, frame: str, seq: int | None) -> None:
        """Queue a serialised frame for the socket."""

    def deliver_event(self, payload: dict[str, Any]) -> None:
        """Queue an event the socket renders for its own user."""

    def resync(self) -> None:
        """Recover from a gap in the live path (the hub lost events)."""

    def revoke(self, user_id: int) -> None:
        """Close the socket if it is ``user_id``'s: they may no longer read the group's room."""


class Hub:
    """The fan-out of one event loop (one worker process)."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.groups: dict[str, set[Subscriber]] = {}
        self._joined: set[str] = set()
        self._locks: dict[str, list] = {}
        self._reader: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self.probe_group = f"hub-probe.{uuid.uuid4().hex}"
        self._probe_seen = 0
        self._probe_arrived = asyncio.Event()
        self._recovering = False
        # Per group: the next seq to pass on, frames held until it arrives, and the timer that
        # stops waiting for it.
        self._next_seq: dict[str, int] = {}
        self._held: dict[str, dict[int, dict[str, Any]]] = {}
        self._held_timers: dict[str, asyncio.TimerHandle] = {}
        # How often the live path was found broken and every socket resynced (for tests).
        self.recoveries = 0

    async def _start(self) -> None:
        async with self._start_lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel(prefix="hub.")
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="realtime-hub-reader")
            if self._refresher is None or self._refresher.done():
                self._refresher = asyncio.create_task(self._refresh(), name="realtime-hub-refresh")
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.create_task(self._watch(), name="realtime-hub-watchdog")

    def _started(self) -> bool:
        """Whether ``_start`` has nothing to do."""
        tasks = (self._reader, self._refresher, self._watchdog)
        return self.channel is not None and all(t is not None and not t.done() for t in tasks)

    @contextlib.asynccontextmanager
    async def _membership(self, group: str):
        """Serialise joining and leaving one group, so a leave never overtakes a later join."""
        entry = self._locks.get(group)
        if entry is None:
            entry = self._locks[group] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[group]

    async def subscribe(self, group: str, subscriber: Subscriber) -> None:
        """Add a socket to a group; returns once this process receives the group's events."""
        if group in self._joined and self._started():
            # The common case (another socket here is in the group): nothing to wait for. A
            # leave under way re-checks ``groups`` before it leaves, and this adds to it first.
            self.groups.setdefault(group, set()).add(subscriber)
            return
        await self._start()
        self.groups.setdefault(group, set()).add(subscriber)
        async with self._membership(group):
            if group in self._joined:
                return
            try:
                await self.layer.group_add(group, self.channel)
            except BaseException:
                self._forget(group, subscriber)
                raise
            self._joined.add(group)

    async def unsubscribe(self, group: str, subscriber: Subscriber) -> None:
        """Remove a socket; the process leaves the group with its last local socket."""
        await self.unsubscribe_all([group], subscriber)

    async def unsubscribe_all(self, groups: list[str], subscriber: Subscriber) -> None:
        """Remove a socket from its groups: from the local fan-out before anything awaits (so
        even a cancelled caller leaves none of it behind), then from the layer."""
        await self.unsubscribe_pairs([(group, subscriber) for group in groups])

    async def unsubscribe_pairs(self, pairs: list[tuple[str, Subscriber]]) -> None:
        """Remove several (group, subscriber) subscriptions, all from the local fan-out before
        anything awaits, then leave the groups that emptied."""
        emptied = [group for group, subscriber in pairs if self._forget(group, subscriber)]
        if stopping():
            return  # the process leaves every group at once when its sockets are all gone
        if len(emptied) == 1:
            await self._leave(emptied[0])
        elif emptied:  # at once: the layer sends the leaves together (realtime.pipelined)
            await asyncio.gather(*(self._leave(group) for group in emptied))

    async def stop(self) -> int:
        """The process stops and its sockets are released (``realtime.stopping``): stop the
        hub's tasks (no rejoin, no recovery from now on), then leave every group it still
        joins, all in one batch of the layer's. Returns how many it left."""
        for task in (self._reader, self._refresher, self._watchdog):
            if task is not None:
                task.cancel()
        groups, self._joined = [self.probe_group, *self._joined], set()
        if self.channel is None:
            return 0
        discard_all = getattr(self.layer, "groups_discard", None)
        if discard_all is not None:  # one batch (realtime.redis_layer)
            try:
                await discard_all(groups, self.channel)
            except Exception:
                logger.warning("could not leave the %d groups; they expire", len(groups))
                return 0
            return len(groups)
        left = await asyncio.gather(
            *(self.layer.group_discard(group, self.channel) for group in groups),
            return_exceptions=True,
        )
        failed = sum(isinstance(outcome, BaseException) for outcome in left)
        if failed:
            logger.warning("could not leave %d of %d groups; they expire", failed, len(groups))
        return len(groups) - failed

    def subscriber_count(self) -> int:
        """Local subscriptions (a socket counts once per group it is in)."""
        return sum(len(members) for members in self.groups.values())

    async def _leave(self, group: str) -> None:
        async with self._membership(group):
            # Someone may have subscribed again while we waited for the lock.
            if group in self.groups or group not in self._joined:
                return
            self._joined.discard(group)
            self._order_forget(group)
            try:
                await self.layer.group_discard(group, self.channel)
            except Exception:
                logger.warning("could not leave group %s; the membership expires by itself", group)

    def _forget(self, group: str, subscriber: Subscriber) -> bool:
        """Drop a local subscriber; True when it was the group's last one here."""
        members = self.groups.get(group)
        if members is None:
            return False
        members.discard(subscriber)
        if members:
            return False
        del self.groups[group]
        return True

    def dispatch(self, message: dict[str, Any]) -> None:
        """Hand one received event to every local subscriber of its group."""
        members = self.groups.get(message.get("group", ""))
        if not members:
            return
        kind = message.get("type")
        if kind == "hub.frame":
            frame, seq, revoke = message["frame"], message.get("seq"), message.get("revoke")
            skip = message.get("skip_user")
        for subscriber in tuple(members):
            try:
                if kind == "hub.frame":
                    if revoke is not None:
                        subscriber.revoke(revoke)
                    if skip is not None and getattr(subscriber, "user_id", None) == skip:
                        continue
                    subscriber.deliver_frame(frame, seq)
                elif kind == "hub.event":
                    subscriber.deliver_event(message["payload"])
            except Exception:
                logger.exception("delivery to a subscriber failed")

    async def _read(self) -> None:
        delay = 0.1
        while True:
            try:
                if getattr(self.layer, "batches", False):
                    messages = await self.layer.receive_many(self.channel)
                else:
                    messages = [await self.layer.receive(self.channel)]
            except asyncio.CancelledError:
                raise
            except Exception:
                # The broker went away (e.g. Redis restarted). Events may have been lost and
                # our memberships with them: back off, rejoin, and have every socket resync.
                logger.warning(
                    "channel layer receive failed; retrying in %.1fs", delay, exc_info=True
                )
                await asyncio.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 5.0)
                await self._recover("a failed receive")
                continue
            delay = 0.1
            for message in messages:
                if message.get("type") == "hub.probe":
                    self._probe_seen = max(self._probe_seen, int(message.get("n", 0)))
                    self._probe_arrived.set()
                else:
                    self.dispatch_ordered(message)

    def dispatch_ordered(self, message: dict[str, Any]) -> None:
        """Pass on events in seq order per group, holding early frames for a while."""
        group, seq = message.get("group", ""), message.get("seq")
        if message.get("type") != "hub.frame" or seq is None or group not in self.groups:
            self.dispatch(message)
            return
        expected = self._next_seq.get(group)
        if expected is not None and seq > expected:
            self._held.setdefault(group, {})[seq] = message
            if group not in self._held_timers:
                loop = asyncio.get_running_loop()
                self._held_timers[group] = loop.call_later(REORDER_WAIT, self._gap_give_up, group)
            return
        # In order, or the first frame we see, or a late one we stopped waiting for.
        self.dispatch(message)
        if expected is None or seq == expected:
            self._next_seq[group] = seq + 1
            self._held_release(group)

    def _held_release(self, group: str) -> None:
        held = self._held.get(group)
        while held and self._next_seq[group] in held:
            self.dispatch(held.pop(self._next_seq[group]))
            self._next_seq[group] += 1
        if not held:
            self._held.pop(group, None)
            timer = self._held_timers.pop(group, None)
            if timer is not None:
                timer.cancel()

    def _gap_give_up(self, group: str) -> None:
        """The missing frames did not come: pass on the rest and let the sockets resync."""
        self._held_timers.pop(group, None)
        held = self._held.pop(group, {})
        for seq in sorted(held):
            self.dispatch(held[seq])
            self._next_seq[group] = seq + 1
        logger.warning("frames of %s missing after %.1fs; its sockets resync", group, REORDER_WAIT)
        for subscriber in tuple(self.groups.get(group, ())):
            subscriber.resync()

    def _order_forget(self, group: str) -> None:
        self._next_seq.pop(group, None)
        self._held.pop(group, None)
        timer = self._held_timers.pop(group, None)
        if timer is not None:
            timer.cancel()

    async def _rejoin(self) -> bool:
        # At once: the layer sends the joins together (realtime.pipelined).
        groups = (self.probe_group, *self._joined)
        results = await asyncio.gather(
            *(self.layer.group_add(group, self.channel) for group in groups),
            return_exceptions=True,
        )
        return not any(isinstance(result, BaseException) for result in results)

    async def _recover(self, reason: str) -> None:
        """Rejoin every group (retrying until the layer answers), then resync every socket."""
        if self._recovering:
            return
        self._recovering = True
        try:
            delay = 0.1
            while not await self._rejoin():
                await asyncio.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 5.0)
            self.recoveries += 1
            # Events were lost: start each group's order afresh; the resync fills the gap.
            for group in tuple(self._next_seq):
                self._order_forget(group)
            logger.warning(
                "live path recovered after %s: rejoined %d groups, resyncing %d sockets",
                reason,
                len(self._joined),
                sum(len(members) for members in self.groups.values()),
            )
            self._resync_all()
        finally:
            self._recovering = False

    async def _watch(self) -> None:
        """Probe the live path end to end; recover when a probe is lost."""
        sent = 0
        try:
            await self.layer.group_add(self.probe_group, self.channel)
        except Exception:
            await self._recover("a failed probe join")
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            sent += 1
            self._probe_arrived.clear()
            try:
                await self.layer.group_send(self.probe_group, {"type": "hub.probe", "n": sent})
                async with asyncio.timeout(PROBE_TIMEOUT):
                    while self._probe_seen < sent:
                        await self._probe_arrived.wait()
                        self._probe_arrived.clear()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Lost (TimeoutError) or not even sent: either way events may have been lost.
                await self._recover("a lost probe")

    def _resync_all(self) -> None:
        # A socket is in several groups (its room, its user, everyone): resync it once.
        subscribers = {subscriber for members in self.groups.values() for subscriber in members}
        for subscriber in subscribers:
            subscriber.resync()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self._rejoin()


# The hub of the running event loop (one per worker process; one per test loop).
get_hub = per_loop(Hub)
