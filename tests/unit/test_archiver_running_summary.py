"""The running summary gives the row `summarize` gives from the whole history, on recorded calls
delivered in batches with repeats and late events, as the archiver folds them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from archiver.running_summary import RunningSummary
from archiver.summary import BotLine, Stored, summarize
from voicebot import recording

CORPUS = Path(__file__).resolve().parents[1] / "calls"
RECORDED = sorted(p.name.removesuffix(".jsonl.gz") for p in CORPUS.glob("*.jsonl.gz"))


def recorded(name: str) -> tuple[str, list[Stored]]:
    rec = recording.read(CORPUS / f"{name}.jsonl.gz")
    return rec.header["call_id"], [Stored(m.seq, m.event()) for m in rec.calls()]


def deliveries(history: list[Stored], seed: int) -> list[list[Stored]]:
    """The history in batches as a consumer may deliver it: mostly in order, some messages
    again (a lost ack), some late (a batch retried after later ones were committed)."""
    rng = random.Random(seed)
    sent = list(history)
    for _ in range(max(2, len(history) // 10)):
        i = rng.randrange(len(sent) - 1)
        late = sent.pop(i)
        sent.insert(rng.randrange(i + 1, min(len(sent), i + 20) + 1), late)
    for _ in range(len(history) // 5):
        i = rng.randrange(len(sent))
        sent.insert(min(len(sent), i + rng.randrange(1, 30)), sent[i])  # again, later
    batches, i = [], 0
    while i < len(sent):
        n = rng.choice((1, 1, 2, 3, 8))
        batches.append(sent[i : i + n])
        i += n
    return batches


def is_late(batches: list[list[Stored]]) -> bool:
    seen: set[int] = set()
    late = False
    for batch in batches:
        late |= any(s.seq < max(seen, default=0) and s.seq not in seen for s in batch)
        seen.update(s.seq for s in batch)
    return late


@pytest.mark.parametrize("name", RECORDED)
@pytest.mark.parametrize("seed", range(4))
def test_a_recorded_call_folded_as_delivered_gives_the_row_of_its_history(
    name: str, seed: int
) -> None:
    """As the archiver does it: the events new to the store folded in, a rebuild from the
    store when one is late; after each batch, the row and the times written so far are those
    `summarize` gives from what the store holds."""
    call_id, history = recorded(name)
    batches = deliveries(history, seed)
    assert is_late(batches), "the deliveries have late events"
    stored: dict[int, Stored] = {}
    running: RunningSummary | None = None
    lines: dict[int, BotLine] = {}
    waits: dict[int, float] = {}
    for batch in batches:
        new = {s.seq: s for s in batch if s.seq not in stored}
        stored.update(new)
        if not new:
            continue  # only repeats: nothing to write
        if running is None or not running.add_new(new.values()):
            running = RunningSummary.of(call_id, stored.values())
        changed_lines, changed_waits = running.take_changes()
        lines.update(changed_lines)
        waits.update(changed_waits)
        expected = summarize(call_id, list(stored.values()))
        assert running.summary() == expected
        assert (lines, waits) == (expected.bot_lines, expected.first_frame_ms)
    assert running is not None and running.summary() == summarize(call_id, history)


def test_the_running_summary_refuses_what_is_not_after_it() -> None:
    call_id, history = recorded("sample")
    running = RunningSummary.of(call_id, history[:10])
    before = running.summary().events
    assert not running.add(history[3]), "a repeat"
    assert not running.add_new([history[9], history[10]])
    assert running.events == before
    assert RunningSummary.of(call_id, history + history[:5]).summary() == summarize(
        call_id, history
    )
