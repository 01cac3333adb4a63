"""What a call left in the streams, checked: nothing lost, nothing twice, the same dialog.

`CallRecord.load` reads the call's CALLS messages (with their Nats-Msg-Id) and its bot audio
from AUDIO. The checks return lists of problems (empty: fine) so a test can assert on them and
print them all at once:

- `duplicates`: two stored messages that mean the same thing (the same decision turn, say,
  playback notice, claim epoch, transcript of a line, end of call): a retry or a stale owner
  stored twice;
- `lost`: every caller line has its transcript and a decision on it, decisions are numbered
  without a hole, every say was played out, the call has its start, claims and end;
- `path` / `says`: the dialog's state path and what the bot said, compared with a fault-free
  call of the same script;
- `double_audio`: from the caller's recording, no utterance's audio was heard twice or
  interleaved with another copy of itself (two owners speaking it).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fault_caller import CallerResult

from events import audio, codec, schemas, streams
from events.bus import Bus
from events.tail import StreamTail

ANSWERING = ("transcript", "dtmf")
TIMELINE_FIELDS = (
    "epoch", "service", "trigger", "state_from", "state_to", "phrase", "text", "from_s", "to_s",
    "reason",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    subject: str
    kind: str  # event.started, transcript, decision, ...
    event: Any
    msg_id: str


@dataclass
class CallRecord:
    call_id: str
    messages: list[Stored] = field(default_factory=list)
    audio_out: list[audio.AudioOut] = field(default_factory=list)
    audio_in_seqs: list[int] = field(default_factory=list)  # caller audio the stream holds

    @classmethod
    async def load(cls, bus: Bus, call_id: str, *, timeout_s: float = 10.0) -> CallRecord:
        record = cls(call_id)
        for msg in await _read_all(bus, streams.CALLS, f"call.{call_id}.>", timeout_s):
            kind = msg.subject.split(".", 2)[2]
            try:
                event = codec.decode_subject(msg.subject, msg.data)
            except codec.BadMessage:
                event = None
            msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            record.messages.append(
                Stored(msg.metadata.sequence.stream, msg.subject, kind, event, msg_id)
            )
        for msg in await _read_all(bus, streams.AUDIO, f"call.{call_id}.audio.out", timeout_s):
            record.audio_out.append(audio.parse_out(msg.headers, msg.data))
        for msg in await _read_all(bus, streams.AUDIO, f"call.{call_id}.audio.in", timeout_s):
            record.audio_in_seqs.append(int((msg.headers or {}).get(audio.H_SEQ, -1)))
        return record

    def caller_audio_lost(self) -> int:
        """audio.in messages the edge numbered but the stream lacks (each one frame of 20 ms up
        to AUDIO_IN_BATCH_MS): caller audio is published without acknowledgement, so an
        outage can drop some."""
        seqs = sorted(set(self.audio_in_seqs))
        return (seqs[-1] + 1 - len(seqs)) if seqs else 0

    # --- views ----------------------------------------------------------------------------------

    def of(self, cls: type) -> list[Any]:
        return [m.event for m in self.messages if isinstance(m.event, cls)]

    def counts(self) -> dict[str, int]:
        """Stored messages by kind (`event.claimed`, `transcript`, `decision`, ...)."""
        return dict(sorted(Counter(m.kind for m in self.messages).items()))

    def finals(self) -> list[str]:
        return [f.text for f in self.of(schemas.Final) if f.text]

    def decisions(self) -> list[schemas.Decision]:
        return self.of(schemas.Decision)

    def path(self) -> list[str]:
        """The dialog's states in the order it went through them."""
        states: list[str] = []
        for d in self.decisions():
            for state in (d.state_from, d.state_to):
                if not states or states[-1] != state:
                    states.append(state)
        return states

    def answers(self) -> list[tuple[str, str, str | None]]:
        """Each decision on what the caller said: (from, to, intent)."""
        return [
            (d.state_from, d.state_to, d.intent) for d in self.decisions() if d.trigger in ANSWERING
        ]

    def says(self) -> list[str]:
        """What the bot said, in order: phrase keys, "text" for synthesized text."""
        return [s.phrase or "text" for s in self.of(schemas.Say)]

    def lost_audio_gaps(self) -> list[schemas.Gap]:
        """Stretches of caller audio the STT worker said never reached the stream."""
        return [g for g in self.of(schemas.Gap) if g.reason == "audio_lost"]

    def timeline(self) -> str:
        """One line per stored message but audio (seq, kind, what it says): a failed check's
        explanation."""
        lines = []
        for m in self.messages:
            said = {k: getattr(m.event, k, None) for k in TIMELINE_FIELDS}
            what = " ".join(f"{k}={v!r}" for k, v in said.items() if v not in (None, ""))
            lines.append(f"{m.seq} {m.kind} {type(m.event).__name__} {what}")
        return "\n".join(lines)

    def ended(self) -> schemas.Ended | None:
        ended = self.of(schemas.Ended)
        return ended[0] if ended else None

    def claims(self, service: str) -> list[schemas.Claimed]:
        return [c for c in self.of(schemas.Claimed) if c.service == service]

    def owner_pid(self, service: str) -> int:
        """The pid of the current owner of `service` (the instance of its newest claim)."""
        claim = max(self.claims(service), key=lambda c: c.epoch)
        return int(claim.instance.rsplit("-", 1)[1])

    def pipeline_starts(self) -> list[float]:
        """Wall-clock times at which the pipeline's utterances started playing."""
        return [p.ts for p in self.of(schemas.PlaybackStarted) if p.origin == "tts"]

    def longest_answer(self, heard: CallerResult) -> float:
        """The caller's longest wait for the pipeline's own answer (hold phrases not counted)."""
        answers = heard.answers(self.pipeline_starts())
        return float("inf") if None in answers else max(a or 0.0 for a in answers)

    def edge_holds(self) -> int:
        return sum(1 for p in self.of(schemas.PlaybackStarted) if p.origin == "edge")

    # --- checks ---------------------------------------------------------------------------------

    def duplicates(self) -> list[str]:
        keys: Counter[tuple[Any, ...]] = Counter()
        ids: Counter[str] = Counter()
        for m in self.messages:
            if m.msg_id:
                ids[m.msg_id] += 1
            key = _meaning(m)
            if key is not None:
                keys[key] += 1
        problems = [f"Nats-Msg-Id {i} stored {n} times" for i, n in ids.items() if n > 1]
        problems += [f"{k} stored {n} times" for k, n in keys.items() if n > 1]
        return problems

    def lost(self, lines: Sequence[str]) -> list[str]:
        """What a call of these caller lines (texts, in order) must have stored."""
        problems = []
        finals = Counter(self.finals())
        decided = Counter(d.text for d in self.decisions() if d.trigger == "transcript")
        for text in lines:
            if finals[text] < 1:
                problems.append(f"no transcript of {text!r}")
            if decided[text] < 1:
                problems.append(f"no decision on {text!r}")
        # Turns count every input, bookkeeping ones (a playback started) included, which are
        # not recorded: numbers have holes by design, but never go back.
        turns = [d.turn for d in self.decisions()]
        if turns != sorted(turns):
            problems.append(f"decision turns out of order: {turns}")
        says = {s.utterance_id for s in self.of(schemas.Say)}
        started = {p.utterance_id for p in self.of(schemas.PlaybackStarted)}
        over = {
            p.utterance_id
            for p in self.of(schemas.PlaybackFinished) + self.of(schemas.PlaybackInterrupted)
        }
        problems += [f"say {u} never started playing" for u in sorted(says - started)]
        problems += [f"say {u} never finished playing" for u in sorted(says - over)]
        for kind in ("event.started", "event.hangup", "event.ended"):
            if not any(m.kind == kind for m in self.messages):
                problems.append(f"no {kind}")
        for service in ("stt_worker", "brain", "tts_worker"):
            if not self.claims(service):
                problems.append(f"no {service} claim")
        if problem := _seq_problem(self.of(schemas.Transcript)):
            problems.append(f"transcript seqs {problem}")
        return problems

    def double_audio(self, heard: CallerResult) -> list[str]:
        """Each utterance the edge played to its end: its audio (as the owner that completed it
        published it) appears in the caller's recording as one contiguous run, as many times as
        utterances with that audio were played (two "hold" phrases legitimately sound alike)."""
        received = [f.pcm for f in heard.frames if any(f.pcm)]
        finished = {p.utterance_id for p in self.of(schemas.PlaybackFinished) if p.frames}
        by_content: Counter[str] = Counter()
        content: dict[str, list[bytes]] = {}
        for uid, frames in self._utterance_frames().items():
            if uid in finished and frames:
                digest = hashlib.sha1(b"".join(frames)).hexdigest()
                by_content[digest] += 1
                content[digest] = frames
        problems = []
        # The edge's own count: frames played of each utterance, against its length.
        whole = self._utterance_frames(keep_silence=True)
        for p in self.of(schemas.PlaybackFinished):
            if p.origin == "tts" and p.utterance_id in whole:
                length = len(whole[p.utterance_id])
                if p.frames != length:
                    problems.append(
                        f"{p.utterance_id}: {p.frames} frames played, the utterance has {length}"
                    )
        for digest, played in by_content.items():
            frames = content[digest]
            runs = _count_runs(received, frames)
            if runs != played:
                problems.append(
                    f"utterance audio {digest[:8]} ({len(frames)} frames) heard as a whole "
                    f"{runs} times, played {played} times"
                )
            first = _count_runs(received, frames[:5])
            if first != played:
                problems.append(
                    f"start of utterance audio {digest[:8]} heard {first} times, played {played}"
                )
        return problems

    def _utterance_frames(self, *, keep_silence: bool = False) -> dict[str, list[bytes]]:
        """Per TTS utterance, the (non-silent) frames of the owner (epoch) that completed it."""
        by_epoch: dict[tuple[str, int], list[audio.AudioOut]] = {}
        for out in self.audio_out:
            by_epoch.setdefault((out.utterance_id, out.epoch), []).append(out)
        chosen: dict[str, list[audio.AudioOut]] = {}
        for (uid, _epoch), outs in sorted(by_epoch.items(), key=lambda kv: kv[0][1]):
            if any(o.last for o in outs):
                chosen[uid] = sorted(outs, key=lambda o: o.seq)
        frames: dict[str, list[bytes]] = {}
        for uid, outs in chosen.items():
            pcm = b"".join(o.pcm for o in outs)
            cut = [pcm[i : i + audio.FRAME_BYTES] for i in range(0, len(pcm), audio.FRAME_BYTES)]
            frames[uid] = cut if keep_silence else [f for f in cut if any(f)]
        return frames


def _meaning(m: Stored) -> tuple[Any, ...] | None:
    """Two stored messages with the same meaning are a duplicate, whatever their ids."""
    match m.event:
        case schemas.Started() | schemas.Hangup() | schemas.Ended():
            return (m.kind,)
        case schemas.Claimed(service=service, epoch=epoch):
            return (m.kind, service, epoch)
        case schemas.Ticket(state=state):
            return (m.kind, state)
        case schemas.Dtmf(seq=seq):
            return (m.kind, seq)
        case schemas.Final(text=text) if text:
            return ("final", text)
        case schemas.Decision(turn=turn):
            return (m.kind, turn)
        case schemas.Say(utterance_id=u):
            return (m.kind, u)
        case schemas.Playback(utterance_id=u):
            return (m.kind, u, codec.tag_of(m.event))
        case schemas.HangupCall() | schemas.Transfer():
            return ("control.end",)
    return None


def _seq_problem(transcripts: Sequence[schemas.Transcript]) -> str | None:
    """Transcript seqs count from 0 with no repeat, and no hole but in a replaced owner's.

    A replaced owner can lose its last messages (killed; or stopped by the takeover while its
    publish was retried through a NATS election): its successor numbers on from what was
    stored, and transcribes again from the last transcript the brain took, so nothing goes
    unheard. The last owner is replaced by no one: a hole after one of its messages is a loss."""
    by_seq = sorted(transcripts, key=lambda t: t.seq)
    seqs = [t.seq for t in by_seq]
    if not seqs:
        return None
    if len(set(seqs)) != len(seqs):
        return f"repeat: {seqs}"
    last_owner = max(t.epoch for t in by_seq)
    holes = [
        (a.seq, b.seq)
        for a, b in itertools.pairwise(by_seq)
        if b.seq != a.seq + 1 and a.epoch == last_owner
    ]
    if seqs[0] != 0 or holes:
        return f"have a hole in the last owner's: {seqs}"
    return None


def _count_runs(received: list[bytes], frames: list[bytes]) -> int:
    """How many times `frames` occurs as a contiguous run in `received` (silence skipped)."""
    if not frames:
        return 0
    n, count, i = len(frames), 0, 0
    first = frames[0]
    while i + n <= len(received):
        if received[i] == first and received[i : i + n] == frames:
            count += 1
            i += n
        else:
            i += 1
    return count


async def _read_all(bus: Bus, stream: str, subject: str, timeout_s: float) -> list[Any]:
    """Every message stored so far on `subject` (with headers), in stream order."""
    info = await bus.js.stream_info(stream, subjects_filter=subject)
    expected = sum((info.state.subjects or {}).values())
    out: list[Any] = []
    if not expected:
        return out
    async with StreamTail(bus, stream, [subject], name=f"check-{subject}") as tail:
        async with asyncio.timeout(timeout_s):
            while len(out) < expected:
                out.append(await tail.get())
    return out
