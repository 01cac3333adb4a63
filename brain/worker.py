"""The brain's async shell: one `CallBrain` per owned call around the pure dialog.

A call's history is read back from the CALLS stream (a stream tail) before anything is
decided: the last `decision` carries the dialog snapshot and the stream sequence of the last
input it consumed, so a takeover resumes exactly where the previous owner stopped. Actions are
published before their decision (each with a deterministic `Nats-Msg-Id`), so a crash between
the two re-publishes the same says and NATS de-duplicates them. Everything it publishes carries
its claim epoch; transcripts from a stale STT owner are ignored.

The database is never on the path of the first words, and never the reason for silence: the
caller number's look-up arrives after the welcome, every query is bounded by a short timeout,
and a ticket is first recorded as an event (`event.ticket` requested) that the archiver writes
if the brain's own insert fails. The caller is only told a ticket number the database gave.
Calls and turns rows are the archiver's projection of the events, not written here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from brain import dialog as d
from brain.config import BrainConfig
from brain.identify import MIN_DIGITS, heard_name
from brain.metrics import (
    ANSWER_SECONDS,
    DB_ERRORS,
    DECISIONS,
    HOLDS,
    NLU_FALLBACKS,
    NLU_SECONDS,
)
from brain.nlu import CATEGORIES, Nlu, understand
from brain.nlu.numbers_fr import to_digits
from brain.phone import caller_id
from brain.solutions import Catalog
from brain.store import Store
from events import schemas, subjects
from events.bus import Bus, Envelope
from events.claims import CallClaims, Claim, instance_name
from events.fence import Fence
from events.streams import CLAIMS

log = logging.getLogger("brain")

CLOSED_LINGER_S = 30.0  # how long a finished dialog waits for the edge's `ended`
LOOKUP_TIMEOUT_S = 1.0  # a customer or technician look-up; then the dialog goes on without it
MAX_PROBE_DIGITS = 14  # a misheard number: a pair doubled, a word heard as digits
TICKET_TIMEOUT_S = 2.0  # the ticket insert, while the caller hears the hold phrase


@dataclass
class Pending:
    """An input waiting to be decided on, with what the decision record needs."""

    input: d.Input
    trigger: str
    seq: int
    text: str | None = None
    nlu: Nlu | None = None
    nlu_source: str = "rules"
    llm_raw: str | None = None
    llm_ms: float | None = None
    latency: schemas.Latency | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class BrainWorker:
    def __init__(self, config: BrainConfig, bus: Bus, store: Store | None = None) -> None:
        self.config = config
        self.bus = bus
        self.store = store
        catalog = Catalog.load(config.solutions_path) if config.solutions_path else Catalog.load()
        policy = d.Policy(no_input_s=config.no_input_s, max_call_s=config.max_call_s)
        self.dialog = d.Dialog(catalog, policy)
        self.llm: Any = None
        if config.nlu_provider == "groq":
            from brain.providers.groq import GroqNlu

            self.llm = GroqNlu(
                api_key=config.groq_api_key or "",
                model=config.groq_model,
                base_url=config.groq_base_url,
                timeout_s=config.llm_timeout_s,
            )
        self.calls: dict[str, CallBrain] = {}
        self.claims: CallClaims | None = None
        self.instance = instance_name()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.llm is not None:
            # The SDK's first request imports and sets up its HTTP stack (hundreds of ms in a
            # new process): here, not on the first call's welcome or first line.
            await self.llm.warm()
        claims = CallClaims(
            self.bus,
            CLAIMS["brain"],
            self._on_call,
            max_calls=self.config.max_calls,
            instance=self.instance,
        )
        self.claims = claims
        self._task = asyncio.create_task(claims.run(), name="brain-claims")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _on_call(self, claim: Claim) -> None:
        call = CallBrain(self, claim)
        self.calls[claim.call_id] = call
        try:
            await call.run()
        finally:
            self.calls.pop(claim.call_id, None)


class CallBrain:
    def __init__(self, worker: BrainWorker, claim: Claim) -> None:
        self.w = worker
        self.bus = worker.bus
        self.store = worker.store
        self.dialog = worker.dialog
        self.claim = claim
        self.call_id = claim.call_id
        self.takeover = claim.takeover
        self.snapshot = d.Snapshot()
        self.last_seq = 0  # stream sequence of the last input decided on
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.segments: list[schemas.Final] = []  # finals of the utterance being spoken
        self.name_heard: str | None = None  # as said when asked who they are, however misheard
        self.ended = False
        self.hold_seq = 0
        self.fence = Fence()
        self.side_tasks: set[asyncio.Task[None]] = set()

    @property
    def epoch(self) -> int:
        return self.claim.epoch

    # --- history and the live loop -------------------------------------------------

    async def run(self) -> None:
        log.info("[%s] brain owns the call%s", self.call_id, " (takeover)" if self.takeover else "")
        if self.w.llm is not None:
            self._side(self.w.llm.warm())  # the LLM's connection, during the welcome
        follower = asyncio.create_task(self._follow(), name=f"brain-follow-{self.call_id}")
        try:
            while not (self.ended and self.queue.empty()):
                # The dialog is over: the edge's `ended` normally follows within a second.
                # Without it (the edge died with the call) the call is released anyway.
                linger = CLOSED_LINGER_S if self.snapshot.state == "CLOSED" else None
                pending = await self._next_input(follower, linger)
                if pending is None:
                    if self.claim.lost is None:
                        log.warning("[%s] no end of call reported: releasing it", self.call_id)
                    break
                await self._decide(pending)
                if self.snapshot.state == "CLOSED" and self.ended:
                    break
        finally:
            follower.cancel()
            for t in self.timers.values():
                t.cancel()
            for task in self.side_tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        log.info("[%s] brain done: %s", self.call_id, self.snapshot.outcome)

    async def _next_input(
        self, follower: asyncio.Task[None], timeout_s: float | None
    ) -> Pending | None:
        """The next input; None after `timeout_s` without one. If the follower died, the call
        fails: the claim goes back and an instance rebuilds the call from its history, rather
        than a brain that no longer hears the caller."""
        getter = asyncio.ensure_future(self.queue.get())
        try:
            done, _ = await asyncio.wait(
                {getter, follower}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if follower in done:
            if self.claim.lost is not None:
                return None  # taken over: see _taken_over
            raise RuntimeError(f"the call's follower stopped: {follower.exception()!r}")
        return None

    async def _follow(self) -> None:
        """Replay the call's history, rebuild the snapshot, then turn new messages into inputs."""
        backlog: list[Envelope] = []
        caught_up = False
        async for env in self.bus.replay(subjects.all_of(self.call_id)):
            if not caught_up:
                match env.event:
                    case schemas.Decision(snapshot=snap, trigger_seq=seq):
                        self.snapshot = msgspec.convert(snap, d.Snapshot)
                        self.last_seq = max(self.last_seq, seq)
                    case _:
                        backlog.append(env)
                if env.pending > 0:
                    continue
                caught_up = True
                for old in backlog:
                    if self._taken_over(old.event):
                        return
                    if old.stream_seq > self.last_seq:
                        await self._input_from(old)
                if self.snapshot.state != "INIT":
                    elapsed = max(0.0, time.time() - self.claim.started.ts)
                    self.queue.put_nowait(Pending(d.Resume(elapsed), "resume", self.last_seq))
                continue
            if self._taken_over(env.event):
                return
            await self._input_from(env)

    def _taken_over(self, event: Any) -> bool:
        """Another brain instance claimed the call after us: stop here, in stream order.

        Says and decisions carry epoch-free Nats-Msg-Ids (a successor re-deciding a turn its
        dead predecessor had half published must not publish it twice). So a stale owner
        (a stalled process that resumed) deciding what its successor decides could store its
        copy first, the successor's would be dropped as a duplicate, and the edge and the TTS
        would then fence the stale copy out: the caller would hear nothing. Everything stored
        after the successor's claim is the successor's to decide; nothing queued is decided."""
        match event:
            case schemas.Claimed(service="brain", epoch=epoch, instance=instance) if (
                epoch > self.epoch and instance != self.w.instance
            ):
                self.claim.lost = f"taken over by {instance} (epoch {epoch})"
                while not self.queue.empty():
                    self.queue.get_nowait()
                log.warning("[%s] brain stops: %s", self.call_id, self.claim.lost)
                return True
        return False

    async def _input_from(self, env: Envelope) -> None:
        """Map a bus message to a dialog input (enriching it: NLU, customer look-up)."""
        seq = env.stream_seq
        put = self.queue.put_nowait
        match env.event:
            case schemas.Claimed(service=service, epoch=epoch):
                self.fence.claimed(service, epoch)
            case schemas.Transcript(epoch=epoch) | schemas.Error(source="stt", epoch=epoch) if (
                not self.fence.allows("stt_worker", epoch)
            ):
                log.warning("[%s] ignored a stale STT owner's message", self.call_id)
            case schemas.Playback(origin="edge"):
                pass  # the edge's own hold phrases: not the dialog's utterances
            case schemas.Started(caller=caller):
                put(Pending(d.CallStarted(caller, None), "started", seq))
                number = caller_id(caller)  # "+33 6…", "0033…", "33…" -> "06…"
                if number and self.store is not None and not self.takeover:
                    self._side(self._caller_lookup(number))
            case schemas.Dtmf(digit=digit):
                put(Pending(d.Dtmf(digit), "dtmf", seq, text=f"DTMF {digit}"))
            case schemas.Hangup(by="caller") | schemas.Ended():
                self.ended = True
                put(Pending(d.CallerHungUp(), "hangup", seq))
            case schemas.BargeIn():
                put(Pending(d.SpeechStarted(), "bargein", seq))
            case schemas.Error(source="stt", code=code):
                trouble = d.ProviderTrouble("gap" if code == "takeover" else "timeout")
                put(Pending(trouble, f"stt_{code}", seq))
            case schemas.SpeechStarted():
                put(Pending(d.SpeechStarted(), "speech_started", seq))
            case schemas.Gap():
                put(Pending(d.ProviderTrouble("gap"), "stt_gap", seq))
            case schemas.Final() as final:
                self.segments.append(final)
                if final.speech_final:
                    await self._utterance(seq)
            case schemas.UtteranceEnd():
                if self.segments:
                    await self._utterance(seq)
            case schemas.PlaybackStarted(utterance_id=u):
                put(Pending(d.PlaybackStarted(u), "playback_started", seq))
            case schemas.PlaybackFinished(utterance_id=u):
                put(Pending(d.PlaybackEnded(u), "playback_finished", seq))
            case schemas.PlaybackInterrupted(utterance_id=u):
                put(Pending(d.PlaybackEnded(u, interrupted=True), "playback_interrupted", seq))
            case _:
                pass  # our own decisions, says and controls, interim transcripts

    async def _utterance(self, seq: int) -> None:
        finals, self.segments = self.segments, []
        text = " ".join(f.text.strip() for f in finals if f.text.strip())
        last = finals[-1]
        expecting = d.expecting(self.snapshot)
        confident = self._trusted(finals, expecting) and bool(text)
        t0 = time.perf_counter()
        nlu, source, raw, llm_ms = (
            await self._understand(text, expecting)
            if text
            else (Nlu(intent="unknown"), "rules", None, None)
        )
        nlu_ms = (time.perf_counter() - t0) * 1000
        NLU_SECONDS.labels(source).observe(nlu_ms / 1000)
        customer = near = None
        phone = nlu.slots.get("phone")
        if phone:
            customer = await self._lookup(phone)
        if customer is None and self.store is not None:
            near = await self._near_customer(phone, text, nlu.slots.get("name"))
        heard = d.Heard(
            text, nlu.intent, dict(nlu.slots), confident, customer, bool(phone), near=near
        )
        latency = schemas.Latency(
            end_of_speech_s=last.end, transcript_ms=last.latency_ms, nlu_ms=round(nlu_ms, 1)
        )
        self.queue.put_nowait(
            Pending(
                heard,
                "transcript",
                seq,
                text=text,
                nlu=nlu,
                nlu_source=source,
                llm_raw=raw,
                llm_ms=llm_ms,
                latency=latency,
                extra={"final_ts": last.ts},
            )
        )

    def _trusted(self, finals: list[schemas.Final], expecting: str | None) -> bool:
        return all(trusted(f, expecting, self.w.config) for f in finals)

    async def _understand(
        self, text: str, expecting: str | None
    ) -> tuple[Nlu, str, str | None, float | None]:
        """Rules offline; with an LLM: a hold phrase if it is slow, the rules if it fails."""
        if self.w.llm is None:
            return understand(text, expecting), "rules", None, None
        task = asyncio.ensure_future(
            self.w.llm.understand(text, expecting, self.snapshot.state, call_id=self.call_id)
        )
        done, _ = await asyncio.wait({task}, timeout=self.w.config.hold_after_s)
        if not done:
            await self._say_hold()
        try:
            nlu, raw, ms = await task
            return nlu, "llm", raw, ms
        except Exception as e:
            NLU_FALLBACKS.labels(type(e).__name__).inc()
            log.warning("[%s] LLM NLU failed (%s): rules decide this turn", self.call_id, e)
            return understand(text, expecting), "llm_fallback", None, None

    async def _say_hold(self) -> None:
        HOLDS.inc()
        self.hold_seq += 1
        uid = f"hold-{self.snapshot.turn}-{self.hold_seq}"
        say = schemas.Say(
            call_id=self.call_id, ts=time.time(), epoch=self.epoch, utterance_id=uid, phrase="hold"
        )
        await self.bus.publish(subjects.say(self.call_id), say, msg_id=f"{self.call_id}:say:{uid}")

    def _side(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    async def _caller_lookup(self, caller: str) -> None:
        """The registered number's customer, after the welcome has started (never before)."""
        customer = await self._lookup(caller)
        if customer is not None:
            self.queue.put_nowait(Pending(d.CallerKnown(customer), "caller_known", 0))

    async def _near_customer(
        self, phone: str | None, text: str, name: str | None
    ) -> d.Customer | None:
        """While the caller identifies: the customer that the name and the number as heard
        point to, even when the number is no valid one ("0 aussi 88 77 5 4 32": misheard
        pairs). The dialog reads it back; only the caller's yes identifies them."""
        if self.snapshot.state not in ("WELCOME", "IDENTIFICATION"):
            return None
        probe = phone or to_digits(text)
        asked = d.expecting(self.snapshot)
        if asked == "identity" or (asked == "problem" and probe):
            # Only where a name was asked for (or comes with a number): before a number given
            # alone, the words are no name ("L'erre 6, 34…" is a misheard "zéro six").
            self.name_heard = name or heard_name(text) or self.name_heard
        if not MIN_DIGITS <= len(probe.lstrip("+")) <= MAX_PROBE_DIGITS:
            return None
        near: d.Customer | None = await _quiet(
            self.store.find_customer_like(probe, self.name_heard) if self.store else _none(),
            self.call_id,
            LOOKUP_TIMEOUT_S,
        )
        return near

    async def _lookup(self, phone: str) -> d.Customer | None:
        if self.store is None:
            return None
        customer: d.Customer | None = await _quiet(
            self.store.find_customer(phone), self.call_id, LOOKUP_TIMEOUT_S
        )
        return customer

    # --- deciding ------------------------------------------------------------------

    async def _decide(self, p: Pending) -> None:
        before = self.snapshot
        if p.seq:
            self.last_seq = max(self.last_seq, p.seq)
        after, actions = self.dialog.step(before, p.input)
        self.snapshot = after
        if not actions and before.state == after.state and p.text is None and p.seq:
            # Bookkeeping only (a playback started): no decision to record. A takeover
            # replays such inputs, since they lie after the last decision's trigger_seq.
            # Inputs that are not in the stream (look-up results) are always recorded.
            return
        follow_ups: list[d.Input] = []
        said_at: float | None = None
        for action in actions:
            said_at = await self._act(action, follow_ups) or said_at
        latency = p.latency
        if latency is not None and said_at is not None and "final_ts" in p.extra:
            since_final = (said_at - p.extra["final_ts"]) * 1000
            ANSWER_SECONDS.observe(max(0.0, since_final / 1000))
            latency = msgspec.structs.replace(
                latency, say_ms=round((latency.transcript_ms or 0) + since_final, 1)
            )
        decision = schemas.Decision(
            call_id=self.call_id,
            ts=time.time(),
            epoch=self.epoch,
            turn=before.turn,
            trigger=p.trigger,
            trigger_seq=self.last_seq,
            state_from=before.state,
            state_to=after.state,
            intent=p.nlu.intent if p.nlu else None,
            slots=dict(p.nlu.slots) if p.nlu else {},
            text=p.text,
            nlu_source=p.nlu_source,
            llm_raw=p.llm_raw,
            llm_ms=p.llm_ms,
            actions=tuple(d.describe(a) for a in actions),
            latency=latency,
            snapshot=msgspec.to_builtins(after),
            expecting=d.expecting(after),
        )
        await self.bus.publish(
            subjects.decision(self.call_id),
            decision,
            msg_id=f"{self.call_id}:decision:{before.turn}",
        )
        DECISIONS.labels(before.state, after.state).inc()
        if before.state != after.state:
            log.info("[%s] %s -> %s (%s)", self.call_id, before.state, after.state, p.trigger)
        for follow_up in follow_ups:
            self.queue.put_nowait(Pending(follow_up, type(follow_up).__name__, 0))

    async def _act(self, action: d.Action, follow_ups: list[d.Input]) -> float | None:
        cid = self.call_id
        match action:
            case d.Say(utterance_id=u, phrase=phrase, text=text, interruptible=i, speed=speed):
                say = schemas.Say(
                    call_id=cid,
                    ts=time.time(),
                    epoch=self.epoch,
                    utterance_id=u,
                    phrase=phrase,
                    text=text,
                    interruptible=i,
                    speed=speed,
                )
                await self.bus.publish(subjects.say(cid), say, msg_id=f"{cid}:say:{u}")
                return say.ts
            case d.StartTimer(name=name, seconds=seconds):
                self._cancel(name)
                self.timers[name] = asyncio.get_running_loop().call_later(seconds, self._fire, name)
            case d.CancelTimer(name=name):
                self._cancel(name)
            case d.Flush(utterance_id=u):
                flush = schemas.Flush(call_id=cid, ts=time.time(), epoch=self.epoch, utterance_id=u)
                msg_id = f"{cid}:flush:{self.snapshot.turn}:{u}"
                await self.bus.publish(subjects.control(cid), flush, msg_id=msg_id)
            case d.FindCustomer(phone=phone):
                follow_ups.append(d.CustomerResult(await self._lookup(phone)))
            case d.FindTechnician(category=category):
                target = None
                if self.store is not None:
                    target = await _quiet(
                        self.store.find_technician(category), cid, LOOKUP_TIMEOUT_S
                    )
                follow_ups.append(d.TechnicianResult(target is not None, target or "technicians"))
            case d.OpenTicket(category=category, summary=summary, status=status):
                number = await self._open_ticket(category, summary, status)
                follow_ups.append(d.TicketOpened(number))
            case d.EndCall(how=how, reason=reason):
                control: schemas.Control
                if how.startswith("transfer"):
                    target = how.partition(":")[2] or "technicians"
                    control = schemas.Transfer(
                        call_id=cid, ts=time.time(), epoch=self.epoch, target=target
                    )
                else:
                    control = schemas.HangupCall(
                        call_id=cid, ts=time.time(), epoch=self.epoch, reason=reason
                    )
                await self.bus.publish(subjects.control(cid), control, msg_id=f"{cid}:end")
            case d.RecordOutcome():
                pass  # in the decision's actions: the archiver projects it
        return None

    async def _open_ticket(self, category: str | None, summary: str, status: str) -> str | None:
        """Record the ticket (durably, as an event), then ask the database for its number.

        Returns the number, or None when the database could not give one in time: the
        archiver creates the ticket from the `requested` event once the database is back.
        """
        cid = self.call_id
        customer_id = self.snapshot.customer_id
        requested = schemas.Ticket(
            call_id=cid,
            ts=time.time(),
            epoch=self.epoch,
            state="requested",
            category=category,
            summary=summary,
            status=status,
            customer_id=customer_id,
        )
        turn = self.snapshot.turn
        await self.bus.publish(
            subjects.event(cid, "ticket"), requested, msg_id=f"{cid}:ticket:{turn}:requested"
        )
        if self.store is None:
            return None
        number = await _quiet(
            self.store.open_ticket(
                cid, customer_id=customer_id, category=category, summary=summary, status=status
            ),
            cid,
            TICKET_TIMEOUT_S,
        )
        if number is None:
            log.warning("[%s] ticket recorded, number pending (database unavailable)", cid)
            return None
        opened = msgspec.structs.replace(requested, ts=time.time(), state="opened", number=number)
        await self.bus.publish(
            subjects.event(cid, "ticket"), opened, msg_id=f"{cid}:ticket:{turn}:opened"
        )
        return str(number)

    def _fire(self, name: str) -> None:
        self.timers.pop(name, None)
        self.queue.put_nowait(Pending(d.Timeout(name), f"timer:{name}", 0))  # type: ignore[arg-type]

    def _cancel(self, name: str) -> None:
        handle = self.timers.pop(name, None)
        if handle is not None:
            handle.cancel()


def trusted(f: schemas.Final, expecting: str | None, c: BrainConfig) -> bool:
    """Whether a transcript is sure enough to act on; else the caller is asked to repeat."""
    floor = c.min_avg_logprob
    # Internet or mobile, chosen among the expected answers or heard as one of them ("Mon
    # portable." at -1.8): the lower floor. A wrong one costs a fix for the other line, which the
    # caller says does not work; a yes/no keeps the general floor, a wrong "oui" ends the call.
    if expecting == "category" and (
        f.provider == schemas.EXPECTED_ANSWER or understand(f.text, expecting).intent in CATEGORIES
    ):
        floor = min(floor, c.min_category_logprob)
    if f.no_speech_prob is not None and f.no_speech_prob > c.max_no_speech_prob:
        return False
    if f.avg_logprob is not None and f.avg_logprob < floor:
        return False
    # A cloud provider gives a confidence instead of a log-probability (0: none given).
    return f.avg_logprob is not None or not f.confidence or f.confidence >= c.min_confidence


async def _none() -> None:
    return None


async def _quiet(coro: Any, call_id: str, timeout_s: float) -> Any:
    """Database trouble must not stop the dialog: within `timeout_s` (the pool's connection
    attempts included), or log it and carry on without the result."""
    try:
        async with asyncio.timeout(timeout_s):
            return await coro
    except Exception as e:
        DB_ERRORS.labels(type(e).__name__).inc()
        log.warning("[%s] database call failed: %r", call_id, e)
        return None
