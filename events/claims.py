"""Call ownership: each call is owned by one instance of each worker kind at a time.

The owner is whoever holds the call's `event.started` message from the kind's work-queue
consumer (streams.ClaimConsumer): it keeps the message "in progress" for the call's whole life
and acks it at the end. If the owner dies (kill -9, a frozen process, a lost machine) its
heartbeats stop and JetStream redelivers the message after `ack_wait` to another instance,
which rebuilds the call from the CALLS stream: that is the takeover.

Fencing: the claim's epoch is the message's delivery count, which grows with every hand-over.
An owner publishes `event.claimed` with its epoch before anything else and stamps the epoch on
all it says; receivers drop messages from older epochs (events/fence.py), and an owner that
sees a newer claim of its kind for one of its calls stops working on it at once (a stalled
process that resumes after a takeover).

Release: the handler returns (the call ended: ack), fails (nak: another instance rebuilds it),
or the call's edge stopped naming it in its liveness beats (liveness.py: ack, the call is over).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import nats
from nats.aio.msg import Msg

from events import codec, schemas, streams, subjects
from events.bus import Bus
from events.liveness import EdgeWatch
from events.tail import NEW

log = logging.getLogger("events.claims")

FETCH_BATCH: Final = 16  # calls taken per request in a burst
MAX_DELIVERIES: Final = 20  # a call whose handler keeps failing is dropped, not retried forever
FAILED_RETRY_S: Final = 0.5


STOP_TRIES: Final = 100  # cancel() every 50 ms for 5 s, then say so


def instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def stop_task(task: asyncio.Task[None], what: str) -> None:
    """Cancel `task` until it has stopped. One cancel() is not enough on Python 3.11: when the
    future that `asyncio.wait_for` waits on (nats-py's request/publish) completes in the same
    loop iteration as the cancellation, wait_for returns its result and drops the
    CancelledError. A stalled owner resuming after a takeover (SIGSTOP, then SIGCONT) hit it:
    the ack of its publish and the cancel arrived together and it went on deciding the call
    beside its successor for the rest of the call."""
    for _ in range(STOP_TRIES):
        if task.done():
            return
        task.cancel()
        await asyncio.wait([task], timeout=0.05)
    log.error("%s ignored %d cancellations", what, STOP_TRIES)


@dataclass(eq=False)
class Claim:
    """One call held by this instance. `epoch` may grow while held (a redelivery to us)."""

    started: schemas.Started
    epoch: int
    takeover: bool
    msg: Msg | None = None  # None: a call handed to a worker directly (tests, tools)
    since: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    lost: str | None = None  # why this instance no longer owns the call

    @property
    def call_id(self) -> str:
        return self.started.call_id


OnCall = Callable[[Claim], Awaitable[None]]


class CallClaims:
    """Owns calls for one service instance; `on_call(claim)` runs for the whole call."""

    def __init__(
        self,
        bus: Bus,
        claim: streams.ClaimConsumer,
        on_call: OnCall,
        *,
        max_calls: int = 1000,
        instance: str | None = None,
        liveness: EdgeWatch | None = None,
    ) -> None:
        self.bus = bus
        self.claim = claim
        self.on_call = on_call
        self.max_calls = max_calls
        self.instance = instance or instance_name()
        self.watch = liveness or EdgeWatch()
        self.held: dict[str, Claim] = {}
        self.released: dict[str, str] = {}  # call -> why it was let go (bounded, for tests/logs)

    @property
    def service(self) -> str:
        return self.claim.service

    async def run(self) -> None:
        await streams.ensure_claims(self.bus.js, self.claim)
        psub = await self.bus.js.pull_subscribe_bind(self.claim.durable, stream=streams.CALLS)
        alive_sub = await self.bus.nc.subscribe(subjects.EDGE_ALIVE, cb=self._on_alive)
        self.watch.connected(time.monotonic())
        self.bus.on_reconnect(self._on_reconnect)
        helpers = [
            asyncio.create_task(self._heartbeat(), name=f"{self.claim.durable}-heartbeat"),
            asyncio.create_task(self._watch_claims(), name=f"{self.claim.durable}-fence"),
            asyncio.create_task(self._watch_edges(), name=f"{self.claim.durable}-liveness"),
        ]
        want = 1  # calls to ask for: a batch only when that many are already waiting
        try:
            while True:
                room = self.max_calls - len(self.held)
                if room <= 0:
                    await asyncio.sleep(0.1)
                    continue
                try:
                    msgs = await psub.fetch(min(room, want), timeout=1.0)
                except TimeoutError:  # nats' own and the bare asyncio one both mean "nothing yet"
                    want = 1  # what was pending went to another instance
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                except nats.errors.Error as e:  # reconnecting: the next fetch will do
                    log.debug("%s: fetch failed: %r", self.claim.durable, e)
                    await asyncio.sleep(0.2)
                    continue
                # nats-py's batch fetch, once a message came, waits for the batch to fill or
                # for its pull to expire (up to 1 s): a call arriving alone waited for the next
                # one (a 250 ms welcome with calls 4 a second). One at a time returns at once;
                # a burst (the server says how many are pending) is still taken by the batch.
                want = max(1, min(FETCH_BATCH, msgs[-1].metadata.num_pending)) if msgs else 1
                for msg in msgs:
                    try:
                        await self._take(msg)
                    except (nats.errors.Error, TimeoutError) as e:
                        # A look-up timed out (a cluster electing a leader): the call comes
                        # back after ack_wait; the claims loop must not die with it.
                        log.warning("%s: could not take a call now (%r)", self.claim.durable, e)
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=FAILED_RETRY_S)
        finally:
            self.bus.off_reconnect(self._on_reconnect)
            for sub in (psub, alive_sub):
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            for task in helpers:
                task.cancel()
            held = list(self.held.values())
            for claim in held:
                if claim.task is not None:
                    claim.task.cancel()
                # A clean stop hands the call to another instance now, not after ack_wait.
                if claim.msg is not None:
                    with contextlib.suppress(Exception):
                        await claim.msg.nak()
            await asyncio.gather(
                *helpers, *(c.task for c in held if c.task is not None), return_exceptions=True
            )

    # --- taking and releasing ---------------------------------------------------------------

    async def _take(self, msg: Msg) -> None:
        env = self.bus.decode(msg)
        if env is None or not isinstance(env.event, schemas.Started):
            await msg.term()  # permanent: never redeliver garbage
            return
        started: schemas.Started = env.event
        epoch = msg.metadata.num_delivered
        held = self.held.get(started.call_id)
        if held is not None:
            # Redelivered to us while we hold it (our heartbeats did not reach the server for a
            # while, e.g. across a NATS restart): keep the call, under the new epoch.
            held.msg, held.epoch = msg, epoch
            log.info("[%s] %s keeps the call, epoch %d", started.call_id, self.service, epoch)
            await self._announce(held)
            return
        takeover = epoch > 1
        if takeover and await self.bus.call_ended(started.call_id):
            await msg.ack()
            return
        if epoch > MAX_DELIVERIES:
            log.error("[%s] %s: claimed %d times, giving up", started.call_id, self.service, epoch)
            await msg.term()
            return
        claim = Claim(started=started, epoch=epoch, takeover=takeover, msg=msg)
        self.held[started.call_id] = claim
        self.watch.hold(started.call_id, started.edge, claim.since)
        claim.task = asyncio.create_task(self._run_call(claim), name=f"call-{started.call_id}")

    async def _announce(self, claim: Claim) -> None:
        event = schemas.Claimed(
            call_id=claim.call_id,
            ts=time.time(),
            epoch=claim.epoch,
            service=self.service,
            instance=self.instance,
            takeover=claim.takeover,
        )
        await self.bus.publish(
            subjects.event(claim.call_id, "claimed"),
            event,
            msg_id=f"{claim.call_id}:claimed:{self.service}:{claim.epoch}",
        )

    async def _run_call(self, claim: Claim) -> None:
        try:
            await self._announce(claim)
            await self.on_call(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("[%s] %s call handler failed", claim.call_id, self.service)
            if claim.lost is None and claim.msg is not None:
                # Another instance (or this one) rebuilds the call from its history.
                with contextlib.suppress(Exception):
                    await claim.msg.nak(delay=FAILED_RETRY_S)
            return
        finally:
            if self.held.get(claim.call_id) is claim:
                del self.held[claim.call_id]
            self.watch.release(claim.call_id)
        if claim.lost is None and claim.msg is not None:
            with contextlib.suppress(Exception):
                await claim.msg.ack()

    async def _let_go(self, call_id: str, why: str, *, done: bool) -> None:
        """Stop working on a call: taken over (`done=False`) or over for good (ack)."""
        claim = self.held.pop(call_id, None)
        if claim is None:
            return
        claim.lost = why
        self.watch.release(call_id)
        self.released[call_id] = why
        while len(self.released) > 1000:
            self.released.pop(next(iter(self.released)))
        log.warning("[%s] %s lets the call go: %s", call_id, self.service, why)
        if claim.task is not None:
            await stop_task(claim.task, f"[{call_id}] {self.service} call handler")
        if done and claim.msg is not None:
            with contextlib.suppress(Exception):
                await claim.msg.ack()

    # --- background duties ------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.claim.ack_wait_s / 4)
            for claim in list(self.held.values()):
                if claim.msg is not None:
                    with contextlib.suppress(Exception):
                        await claim.msg.in_progress()

    async def _watch_claims(self) -> None:
        """A newer claim of our kind for a call we hold: someone took it over; stop at once."""
        async with self.bus.tail(
            streams.CALLS, ["call.*.event.claimed"], start=NEW, name=f"{self.service}-claims"
        ) as tail:
            async for msg in tail:
                env = self.bus.decode(msg)
                if env is None or not isinstance(env.event, schemas.Claimed):
                    continue
                claimed: schemas.Claimed = env.event
                held = self.held.get(claimed.call_id)
                if (
                    held is not None
                    and claimed.service == self.service
                    and claimed.instance != self.instance
                    and claimed.epoch > held.epoch
                ):
                    why = f"taken over by {claimed.instance} (epoch {claimed.epoch})"
                    await self._let_go(claimed.call_id, why, done=False)

    def _on_reconnect(self) -> None:
        self.watch.connected(time.monotonic())

    async def _on_alive(self, msg: Msg) -> None:
        try:
            alive = codec.decode_edge_alive(msg.data)
        except codec.BadMessage as e:
            log.debug("bad edge liveness beat: %s", e)
            return
        self.watch.beat(alive, time.monotonic())

    async def _watch_edges(self) -> None:
        """Let go of calls whose edge is gone (the `ended` that would have ended them was lost)."""
        while True:
            await asyncio.sleep(1.0)
            if not self.bus.nc.is_connected:
                self.watch.disconnected()
                continue
            for call_id, why in self.watch.orphans(time.monotonic()).items():
                await self._let_go(call_id, why, done=True)
