"""(Re)record the replay corpus under tests/calls/ through the in-process pipeline.

Each scenario is one call placed by the test caller (espeak voice) against the whole system
(`scripted_pipeline`), with STT through the real Deepgram SDK to the loopback server in utterance
mode (each voiced stretch of the caller's audio is heard as the next scripted line), NLU by
rules and espeak-ng as the bot's voice. The call is exported with the setup it needs (brain
environment, SQL run on a fresh database) in its header, so a replay can reproduce it.

    .venv/bin/python scripts/record_corpus.py            # every scenario
    .venv/bin/python scripts/record_corpus.py sample dtmf_fallback
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import asyncpg  # noqa: E402
from loopback.deepgram_live import Faults  # noqa: E402
from pipeline import scripted_pipeline  # noqa: E402

from brain.store import apply_schema  # noqa: E402
from events import subjects  # noqa: E402
from events.bus import Bus  # noqa: E402
from events.streams import ensure_streams  # noqa: E402
from tts_worker.providers.espeak import synthesize_8k  # noqa: E402
from voicebot import dialog_diff, recording  # noqa: E402
from voicebot.caller import SAMPLE_DIALOG, Caller, parse_script  # noqa: E402
from voicebot.export import read_call  # noqa: E402
from voicebot.servers import NatsServer, PostgresServer, free_port  # noqa: E402

CORPUS = ROOT / "tests" / "calls"

IDENTITY = "say: Pierre Dupont, 06 12 34 56 78.\n"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    script: str
    env: dict[str, str] = field(default_factory=dict)
    sql: tuple[str, ...] = ()
    audio: bool = False  # keep the caller's audio (for full-mode replay); costs file size
    hang_connects: int = 0  # the STT loopback never answers the first N handshakes


SCENARIOS = [
    Scenario("sample", "The sample dialog of the README: internet, solved.", SAMPLE_DIALOG),
    Scenario(
        "mobile",
        "A mobile network problem, solved by the first step.",
        "say: Bonjour, je n'ai plus de réseau sur mon portable.\n"
        "say: Marie Martin, 06 98 76 54 32.\n"
        "say: Le mobile.\n"
        "say: D'accord.\n"
        "say: Oui, c'est bon.\n",
    ),
    Scenario(
        "unknown_caller",
        "A caller who is not a customer: the number is read back, then help.",
        "say: Bonjour, mon wifi ne marche plus.\n"
        "say: Paul Durand, 06 00 00 00 01.\n"
        "say: Oui, c'est bien ça.\n"
        "say: Internet.\n"
        "say: D'accord.\n"
        "say: Oui, ça marche.\n",
    ),
    Scenario(
        "transfer",
        "Every fix fails (one refused at once): transfer to the available internet technician.",
        "say: Bonjour, j'ai un problème avec ma connexion.\n" + IDENTITY + "say: Internet.\n"
        "say: D'accord.\n"
        "say: Non, toujours pas.\n"
        "say: Ça ne marche pas, je l'ai déjà fait.\n"
        "say: D'accord.\n"
        "say: Non, ça ne marche pas.\n",
    ),
    Scenario(
        "ticket",
        "Every fix fails and no technician is available: a ticket, then goodbye.",
        "say: Bonjour, j'ai un problème avec ma connexion.\n" + IDENTITY + "say: Internet.\n"
        "say: D'accord.\n"
        "say: Non, toujours pas.\n"
        "say: D'accord.\n"
        "say: Non, ça ne marche pas.\n"
        "say: D'accord.\n"
        "say: Toujours pas.\n",
        sql=("UPDATE technicians SET available = false",),
    ),
    Scenario(
        "silence",
        "The caller says nothing: re-prompt, last warning, goodbye (NO_INPUT_S=1).",
        "",
        env={"NO_INPUT_S": "1"},
    ),
    Scenario(
        "bargein_welcome",
        "The caller speaks over the welcome, then the sample dialog.",
        "bargein: Bonjour, j'ai un problème avec ma connexion.\n"
        "wait: 5\n" + "".join(SAMPLE_DIALOG.splitlines(keepends=True)[2:]),
    ),
    Scenario(
        "dtmf_fallback",
        "Two misunderstood answers to the category question: keypad choices instead.",
        "say: Bonjour, j'ai un souci.\n" + IDENTITY + "say: Euh, je ne sais pas.\n"
        "say: Bof.\n"
        "dtmf: 1\n"
        "dtmf: 1\n"
        "dtmf: 1\n",
    ),
    Scenario(
        "keypad_fails",
        "The category is never understood, not even after the keypad prompt: a technician.",
        "say: Bonjour, j'ai un souci.\n" + IDENTITY + "say: Euh, je ne sais pas.\n"
        "say: Bof.\n"
        "say: Je ne sais vraiment pas.\n",
    ),
    Scenario(
        "out_of_scope",
        "A billing question: a polite answer, then an advisor.",
        "say: Bonjour, c'est pour une question sur ma facture.\n",
    ),
    Scenario(
        "provider_timeout",
        "The STT provider does not answer at the start: hold phrase, repeat request, go on.",
        "wait: 1\n" + "".join(SAMPLE_DIALOG.splitlines(keepends=True)[1:]),
        env={"API_TIMEOUT_S": "1"},
        hang_connects=3,
    ),
    Scenario(
        "agent",
        "The caller asks for a person at once: transfer. Keeps the caller audio (full mode).",
        "say: Je veux parler à un conseiller.\n",
        audio=True,
    ),
]


def espeak(text: str) -> bytes:
    return synthesize_8k(text, "fr", 170)


def lines_of(script: str) -> list[str]:
    return [s.arg for s in parse_script(script) if s.verb in ("say", "bargein")]


async def fresh_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    await apply_schema(url)
    return url


async def run_sql(url: str, statements: tuple[str, ...]) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for sql in statements:
            await conn.execute(sql, timeout=10)
    finally:
        await conn.close()


async def record(s: Scenario, nats_url: str, admin_url: str, work: Path) -> Path:
    database_url = await fresh_database(admin_url, f"corpus_{s.name}")
    await run_sql(database_url, s.sql)
    faults = Faults(hang_connects=s.hang_connects)
    data_dir = work / s.name
    data_dir.mkdir(parents=True, exist_ok=True)
    async with scripted_pipeline(
        nats_url, database_url, data_dir, lines_of(s.script), faults=faults, **s.env
    ) as (ports, _):
        caller = Caller(
            "127.0.0.1",
            ports.audiosocket,
            parse_script(s.script),
            synth=espeak,
            out=sys.stderr,
            turn_timeout_s=20,
        )
        result = await caller.run()
        bus = await Bus.connect(nats_url, "record")
        try:
            await ensure_streams(bus.js)
            async with asyncio.timeout(10):
                async for _ in bus.replay(subjects.event(result.call_id, "ended")):
                    break
            await asyncio.sleep(0.5)  # the brain's last decisions after `ended`
        finally:
            await bus.close()
        setup = {
            "scenario": s.name,
            "description": s.description,
            "script": s.script,
            "env": s.env,
            "sql": list(s.sql),
        }
        rec = await read_call(nats_url, result.call_id, audio=s.audio, setup=setup)
    if not s.audio:
        rec.messages = [m for m in rec.messages if m.stream == "CALLS"]
    else:  # full mode replays the caller's side: the bot's audio is not needed
        rec.messages = [m for m in rec.messages if not m.subject.endswith(".audio.out")]
        rec.header["audio_out"] = 0
    path = recording.write(rec, CORPUS / f"{s.name}.jsonl.gz")
    d = dialog_diff.extract(rec.events())
    print(
        f"{s.name}: {path.stat().st_size // 1024} KB, {result.duration_s:.1f} s, "
        f"states {' > '.join(d.states)}, outcome {d.outcome}, errors {result.errors}"
    )
    return path


async def record_all(scenarios: list[Scenario], nats_url: str, pg_url: str, work: Path) -> None:
    for s in scenarios:
        await record(s, nats_url, pg_url, work)


def main(names: list[str]) -> int:
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    work = Path(tempfile.mkdtemp(prefix="voicebot-corpus-"))
    work.chmod(0o755)  # PostgreSQL's unprivileged user must be able to enter it
    nats = NatsServer(store_dir=work / "nats", port=free_port())
    pg = PostgresServer(data_dir=work / "pg", port=free_port(), fast=True)
    nats.start()
    pg.start()
    try:
        asyncio.run(record_all(chosen, nats.url, pg.url, work))
    finally:
        pg.stop()
        nats.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "names", nargs="*", help=f"scenarios (default all): {[s.name for s in SCENARIOS]}"
    )
    sys.exit(main(p.parse_args().names))
