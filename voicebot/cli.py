"""The `voicebot` command: up, call, sub, trace, export, replay, archive, purge, nlu, cache."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from events import env, subjects
from events.auth import Login
from events.runtime import install_uvloop, setup_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voicebot", description="Voicebot SAV: French after-sales phone bot"
    )
    p.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING (default LOG_LEVEL or INFO)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole system in one process (development)")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where embedded NATS/PostgreSQL keep their data (default VOICEBOT_DATA_DIR or ./var)",
    )
    up.add_argument(
        "--scale",
        default=None,
        help="instances per worker, each its own process: e.g. brain=2,stt_worker=2,tts_worker=2",
    )
    up.add_argument(
        "--nats-cluster",
        action="store_true",
        help="run a 3-node NATS JetStream cluster (streams replicated R3) instead of one server",
    )

    call = sub.add_parser("call", help="place a test call like Asterisk's AudioSocket app")
    call.add_argument("--host", default="127.0.0.1")
    call.add_argument("--port", type=int, default=None, help="default AUDIOSOCKET_PORT or 9090")
    call.add_argument(
        "--script",
        type=Path,
        default=None,
        help="caller script: say:/bargein:/wav:/dtmf:/wait:/hangup lines "
        "(default: assets/sample_call/sample_dialog.txt, the sample dialog)",
    )
    call.add_argument(
        "--record",
        type=Path,
        default=Path("recordings/last-call.wav"),
        help="WAV file for the bot's audio (default recordings/last-call.wav)",
    )
    call.add_argument(
        "--voice", default=None, help="espeak-ng voice (default: mb-fr1 if installed, else fr)"
    )
    call.add_argument("--call-id", default=None, help="UUID to use (default: a new one)")
    call.add_argument(
        "--caller",
        default=None,
        help="register this caller number through the HTTP API first (needs API_TOKEN or loopback)",
    )
    call.add_argument(
        "--no-trace", action="store_true", help="do not print the bot's side from NATS"
    )
    call.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the bot each turn"
    )
    _load_arguments(call)

    s = sub.add_parser("sub", help="print messages on a subject, like `nats sub`")
    s.add_argument("subject", nargs="?", default="call.>")
    s.add_argument("--count", type=int, default=0, help="stop after N messages")
    s.add_argument("--no-audio", action="store_true", help="hide audio messages")

    n = sub.add_parser("nlu", help="print the offline NLU's reading of one utterance")
    n.add_argument("text")
    n.add_argument(
        "--json", action="store_true", help="print JSON (the default is JSON too, indented)"
    )
    n.add_argument(
        "--expecting",
        default=None,
        choices=["problem", "identity", "phone", "category", "yes_no", "ack"],
    )

    t = sub.add_parser("trace", help="follow calls live, one line per event")
    t.add_argument(
        "call_id", nargs="?", default=None, help="one call: its stored history, then live"
    )
    t.add_argument("--json", dest="json_out", action="store_true", help="one JSON object per event")
    t.add_argument("--count", type=int, default=0, help="stop after N lines")

    e = sub.add_parser("export", help="write a call's events and audio to a file")
    e.add_argument("call_id")
    e.add_argument("-o", "--output", type=Path, default=None, help="default <CALL_ID>.jsonl.gz")
    e.add_argument("--no-audio", action="store_true", help="events only")

    r = sub.add_parser("replay", help="re-run a recorded call and diff the dialog")
    r.add_argument("source", help="recording file or call id")
    r.add_argument("--mode", choices=["brain", "full"], default="brain")
    r.add_argument("--speed", type=float, default=1.0, help="brain mode: divide the gaps by this")
    r.add_argument("--host", default="127.0.0.1", help="full mode: AudioSocket host")
    r.add_argument("--port", type=int, default=None, help="full mode: default AUDIOSOCKET_PORT")

    _archive_parsers(sub)
    sub.add_parser(
        "streams",
        help="create or update the JetStream streams and claim consumers (as NATS user admin)",
    )

    c = sub.add_parser("cache", help="pre-generate the phrase cache (assets/cache)")
    c.add_argument("--cache-dir", type=Path, default=None)
    c.add_argument("--force", action="store_true", help="regenerate every phrase")
    return p


def _load_arguments(call: argparse.ArgumentParser) -> None:
    """`voicebot call --calls N`: the load caller's options."""
    load = call.add_argument_group(
        "load", "with --calls N: N concurrent calls from one timer, figures at the end"
    )
    load.add_argument("--calls", type=int, default=None, help="place N concurrent calls")
    load.add_argument(
        "--duration", type=float, default=30.0, help="seconds from the last connection to the end"
    )
    load.add_argument(
        "--ramp", type=float, default=0.0, help="spread the connections over R seconds"
    )
    load.add_argument(
        "--phases",
        type=int,
        default=4,
        help="the calls' 20 ms clocks spread over P offsets, as an Asterisk's channels are "
        "(1: every call on one clock)",
    )
    load.add_argument(
        "--warmup", type=float, default=1.0, help="pacing is measured after W seconds"
    )
    load.add_argument(
        "--keyed",
        action="store_true",
        help="speak line k as the tone the Deepgram loopback hears as its text (bench)",
    )
    load.add_argument(
        "--provider-delays",
        default=None,
        metavar="STT,LLM,TTS",
        help="the providers' own delays in ms (e.g. 300,150,200): also print the latency "
        "the pipeline adds to them",
    )
    load.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    load.add_argument("--quiet", action="store_true", help="no per-call lines")


def _archive_parsers(sub: Any) -> None:
    """`archive` and `purge`: the archiver's commands."""
    a = sub.add_parser(
        "archive",
        help="stereo MP3 of every ended call not archived yet (nightly; see README)",
        description="Rebuild each ended call's audio from the AUDIO stream (caller left, bot "
        "right), encode it to ARCHIVE_DIR/YYYY/MM/DD/<call>.mp3 and record it in PostgreSQL. "
        "A second run is a no-op; the exit code is 1 when a call failed.",
    )
    a.add_argument("--bitrate", default=None, help="MP3 bitrate (default ARCHIVE_BITRATE or 64k)")
    a.add_argument(
        "--workers",
        type=int,
        default=None,
        help="encoding processes (default ARCHIVE_WORKERS or 1)",
    )
    a.add_argument(
        "--delete-raw",
        action="store_true",
        help="purge a call's audio from the AUDIO stream once its MP3 is verified",
    )
    a.add_argument("--since", type=_when, default=None, help="calls started at or after (ISO date)")
    a.add_argument("--until", type=_when, default=None, help="calls started before (ISO date)")
    a.add_argument("--call", dest="call_id", default=None, help="only this call id")
    a.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    a.add_argument(
        "--prune",
        action="store_true",
        help="also delete MP3s and rows of calls older than the retention age",
    )
    a.add_argument(
        "--retention-days",
        type=float,
        default=None,
        help="retention age for --prune (default ARCHIVE_RETENTION_DAYS or 365)",
    )

    pg = sub.add_parser(
        "purge",
        help="erase every trace of one caller (GDPR): MP3s, rows, stream messages",
    )
    pg.add_argument("--caller", required=True, help="the caller's number (any usual format)")
    pg.add_argument("--dry-run", action="store_true", help="print what would be removed")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        env.load_dotenv()
        # The NATS passwords `voicebot up` generated (when .env has none): `voicebot call`,
        # `trace`, `sub` in a second terminal log in with them.
        with contextlib.suppress(PermissionError):  # another user's `voicebot up`
            env.load_dotenv(Path(env.get_str("VOICEBOT_DATA_DIR", "var")) / "secrets.env")
    except env.ConfigError as e:
        print(f"voicebot: {e}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or env.get_str("LOG_LEVEL", "INFO"))
    install_uvloop()
    if args.command in ("archive", "purge", "export"):
        _default_database_url()
    try:
        match args.command:
            case "up":
                from voicebot.processes import ScaleError, parse_scale
                from voicebot.up import up

                try:
                    scale = parse_scale(args.scale)
                except ScaleError as e:
                    print(f"voicebot up: {e}", file=sys.stderr)
                    return 2
                data_dir = (
                    args.data_dir or Path(env.get_str("VOICEBOT_DATA_DIR", "var"))
                ).resolve()
                data_dir.mkdir(parents=True, exist_ok=True)
                data_dir.chmod(0o755)  # PostgreSQL's unprivileged user must be able to enter it
                return asyncio.run(up(data_dir, scale, nats_cluster=args.nats_cluster))
            case "call":
                return asyncio.run(_call(args))
            case "sub":
                from voicebot.sub import subscribe

                url = env.get_str("NATS_URL", "nats://127.0.0.1:4222")
                asyncio.run(
                    subscribe(
                        url,
                        args.subject,
                        count=args.count,
                        audio=not args.no_audio,
                        login=Login.from_env("tracer"),
                    )
                )
                return 0
            case "streams":
                return asyncio.run(_streams())
            case "nlu":
                from brain.nlu import understand

                result = understand(args.text, args.expecting)
                body = {"intent": result.intent, "slots": dict(result.slots)}
                print(
                    json.dumps(body, ensure_ascii=False)
                    if args.json
                    else json.dumps(body, ensure_ascii=False, indent=2)
                )
                return 0
            case "cache":
                return asyncio.run(_cache(args))
            case "archive" | "purge":
                return asyncio.run(_archive(args))
            case "trace" | "export" | "replay":
                return asyncio.run(_recordings(args))
    except KeyboardInterrupt:
        return 130
    except env.ConfigError as e:
        print(f"voicebot: {e}", file=sys.stderr)
        return 2
    return 2


def _default_database_url() -> None:
    """Without DATABASE_URL, the PostgreSQL `voicebot up` (`make run`) embeds, as NATS_URL
    defaults to its nats-server: `voicebot archive` in a second terminal just works."""
    if env.get_opt("DATABASE_URL") is None:
        from voicebot.servers import PostgresServer

        port = env.get_int("PG_PORT", 5432)
        os.environ["DATABASE_URL"] = PostgresServer(data_dir=Path("."), port=port).url


async def _recordings(args: argparse.Namespace) -> int:
    """trace, export and replay: reading calls back from the streams."""
    from voicebot.export import ExportError, export_call
    from voicebot.recording import RecordingError
    from voicebot.replay import ReplayError, replay
    from voicebot.trace import trace

    url = env.get_str("NATS_URL", "nats://127.0.0.1:4222")
    reader = Login.from_env("tracer")  # trace and export only read
    try:
        match args.command:
            case "trace":
                return await trace(
                    url, args.call_id, json_out=args.json_out, count=args.count, login=reader
                )
            case "export":
                path = await export_call(
                    url,
                    args.call_id,
                    args.output or Path(f"{args.call_id}.jsonl.gz"),
                    database_url=env.get_opt("DATABASE_URL"),
                    audio=not args.no_audio,
                    login=reader,
                )
                print(path)
                return 0
            case _:
                port = args.port or env.get_int("AUDIOSOCKET_PORT", 9090)
                return await replay(
                    url,
                    args.source,
                    mode=args.mode,
                    speed=args.speed,
                    audiosocket=(args.host, port) if args.mode == "full" else None,
                    login=Login.from_env("admin"),  # it publishes as the edge and STT would
                )
    except (ValueError, ExportError, RecordingError, ReplayError) as e:
        print(f"voicebot {args.command}: {e}", file=sys.stderr)
        return 1 if isinstance(e, ExportError) and args.command == "export" else 2


def _when(text: str) -> datetime.datetime:
    """An ISO date or date-time; without a zone, the machine's local time."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date like 2026-11-25 or 2026-11-25T03:00, got {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()


async def _archive(args: argparse.Namespace) -> int:
    """archive and purge: the archiver's commands (PostgreSQL, the streams, ARCHIVE_DIR)."""
    from archiver import purge
    from archiver.config import ArchiverConfig
    from archiver.connect import Unreachable

    config = ArchiverConfig.from_env()
    try:
        if args.command == "purge":
            return await purge.purge_caller(
                config.database_url,
                config.nats_url,
                args.caller,
                dry_run=args.dry_run,
                out=sys.stdout,
            )
        return await _run_archive(args, config)
    except purge.PurgeError as e:
        print(f"voicebot purge: {e}", file=sys.stderr)
        return 2
    except Unreachable as e:
        print(f"voicebot {args.command}: {e}", file=sys.stderr)
        return 1


async def _run_archive(args: argparse.Namespace, config: Any) -> int:
    from archiver import archive
    from archiver.config import parse_bitrate

    if args.workers is not None and args.workers < 1:
        print("voicebot archive: --workers must be at least 1", file=sys.stderr)
        return 2
    options = archive.Options(
        bitrate=parse_bitrate(args.bitrate, "--bitrate") if args.bitrate else config.bitrate,
        workers=args.workers or config.workers,
        delete_raw=args.delete_raw,
        since=args.since,
        until=args.until,
        call_id=args.call_id,
        dry_run=args.dry_run,
        prune=args.prune,
        retention_days=args.retention_days,
    )
    if options.call_id is not None and not subjects.is_call_id(options.call_id):
        print(f"voicebot archive: not a call id: {options.call_id!r}", file=sys.stderr)
        return 2
    return await archive.run(config, options)


async def _streams() -> int:
    """What production runs once before the services (a compose one-shot, a systemd unit):
    the services themselves may not create or change streams (nats-auth.conf)."""
    from events.bus import Bus
    from events.streams import CALLS_SUBJECTS, Retention, ensure_streams

    url = env.get_str("NATS_URL", "nats://127.0.0.1:4222")
    retention = Retention.from_env()
    bus = await Bus.connect(url, "streams", login=Login.from_env("admin"), connect_timeout=10)
    try:
        await ensure_streams(bus.js, retention)
    finally:
        await bus.close()
    print(
        f"streams ready on {url}: CALLS ({len(CALLS_SUBJECTS)} subjects, "
        f"{retention.calls_days:g} days), AUDIO ({retention.audio_days:g} days, "
        f"{retention.audio_max_bytes // 1024**2} MiB), replicas {retention.replicas}; "
        "claim consumers of stt_worker, brain, tts_worker"
    )
    return 0


async def _cache(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tts_worker.config import TtsConfig
    from tts_worker.phrase_cache import generate_configured

    config = TtsConfig.from_env()
    if args.cache_dir is not None:
        config = replace(config, cache_dir=args.cache_dir)
    if args.force:
        for raw in config.cache_dir.glob("*.raw"):
            raw.unlink()
    t0 = time.perf_counter()
    lines = await generate_configured(config)
    for line in lines:
        print(line)
    print(
        f"Génération du cache terminée avec succès ! ({len(lines)} phrases, "
        f"{time.perf_counter() - t0:.2f} s, {config.cache_dir})"
    )
    return 0


async def _call(args: argparse.Namespace) -> int:
    from voicebot.caller import SAMPLE_CALL, SAMPLE_DIALOG, Caller, ScriptError, parse_script
    from voicebot.speech import caller_voice, synthesizer

    script = args.script or SAMPLE_CALL
    try:
        if args.keyed and args.script is None:
            # Keyed lines need no recording: the sample dialog as text, the lines the Deepgram
            # loopback (bench/loopback_providers.py) hears by default.
            steps = parse_script(SAMPLE_DIALOG)
        else:
            steps = parse_script(script.read_text(encoding="utf-8"), base_dir=script.parent)
    except (OSError, ScriptError) as e:
        print(f"voicebot call: {e}", file=sys.stderr)
        return 2
    port = args.port or env.get_int("AUDIOSOCKET_PORT", 9090)
    voice = args.voice or caller_voice()
    if args.calls is not None:
        from voicebot.load_cli import load_call

        return await load_call(args, steps, port, synthesizer(voice))
    caller = Caller(
        args.host,
        port,
        steps,
        call_id=args.call_id,
        synth=synthesizer(voice),
        record=args.record,
        turn_timeout_s=args.timeout,
    )
    print(f"Calling {args.host}:{port} as call {caller.call_id} (voice {voice})")
    if args.caller:
        await _register_caller(args.host, caller.call_id, args.caller)
    tracer = None if args.no_trace else asyncio.create_task(_trace(caller.call_id))
    try:
        result = await caller.run()
    except OSError as e:
        print(
            f"voicebot call: cannot reach the AudioSocket server at {args.host}:{port}: {e}."
            " Is `make run` (voicebot up) running?",
            file=sys.stderr,
        )
        return 1
    finally:
        if tracer is not None:
            await asyncio.sleep(0.3)  # let the last events print
            tracer.cancel()
            await asyncio.gather(tracer, return_exceptions=True)
    print(
        f"Call {result.call_id}: {result.duration_s:.1f} s, {result.frames_in} bot frames "
        f"({result.bot_frames_voiced} voiced), hung up by {result.hung_up_by or '?'}; "
        f"bot audio in {args.record}"
    )
    for error in result.errors:
        print(f"  problem: {error}")
    return 0 if result.hung_up_by == "bot" and not result.errors else 1


async def _register_caller(host: str, call_id: str, number: str) -> None:
    token = env.get_opt("API_TOKEN")
    port = env.get_int("HTTP_PORT", 8080)
    body = number.encode()
    head = (
        f"PUT /calls/{call_id}/caller HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        + (f"Authorization: Bearer {token}\r\n" if token else "")
        + "Connection: close\r\n\r\n"
    )
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=5)
    writer.write(head.encode() + body)
    status = (await asyncio.wait_for(reader.readline(), timeout=5)).decode().strip()
    writer.close()
    print(f"Caller number registered: {status}")


async def _trace(call_id: str) -> None:
    """Print the bot's side of the call from NATS, when it is reachable; across a NATS restart
    it reconnects and resumes after the last event it printed."""
    from events import schemas, streams
    from events.bus import Bus
    from events.phrases import PHRASES
    from events.tail import ALL
    from voicebot.load_follow import connect_once

    url = env.get_str("NATS_URL", "nats://127.0.0.1:4222")
    login = Login.from_env("tracer")
    try:
        # Once, quietly: with NATS down or the login refused, the bus would retry all call
        # long and warn every 250 ms over the dialog being printed.
        await (await connect_once(url, login, "voicebot-call-probe")).close()
        bus = await Bus.connect(url, "call", login=login, connect_timeout=2)
    except Exception as e:
        hint = ""
        if "authorization" in str(e).lower():
            hint = (
                ". The tracer's password is NATS_TRACER_PASSWORD, from the server's .env or "
                "$VOICEBOT_DATA_DIR/secrets.env"
            )
        print(f"(cannot read NATS at {url}: {e}; only audio is shown{hint})")
        return
    try:
        # From the call's first event: the check above may take longer than the welcome.
        async with bus.tail(streams.CALLS, [f"call.{call_id}.>"], start=ALL, name="call") as tail:
            async for msg in tail:
                env_ = bus.decode(msg)
                if env_ is None:
                    continue
                match env_.event:
                    case schemas.Say(phrase=str(key)):
                        print(f"Bot: {PHRASES.get(key, key)}", flush=True)
                    case schemas.Say(text=str(text)):
                        print(f"Bot: {text}", flush=True)
                    case schemas.Final(text=text):
                        print(f"      (heard: {text!r})", flush=True)
                    case schemas.Decision(state_from=a, state_to=b, intent=intent, slots=slots) if (
                        a != b or intent
                    ):
                        extra = f" {intent} {slots}" if intent else ""
                        print(f"      [{a} -> {b}{extra}]", flush=True)
                    case schemas.PlaybackStarted(origin="edge", utterance_id=uid):
                        print(f"      (the edge plays {uid}: the pipeline is silent)", flush=True)
    finally:
        await bus.close()


if __name__ == "__main__":
    sys.exit(main())
