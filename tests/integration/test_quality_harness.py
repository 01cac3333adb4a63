"""The quality harness's fast subset: a few personas, one voice, through the AudioSocket port of
the whole pipeline on the offline default (`make quality` runs them all against `voicebot up`).

It checks that the figures are computed and sane, not a quality level: recognition of the
sample caller may change as others improve it. The two personas whose end does not depend on
what the recogniser makes of them (one hangs up when asked for a name, one never speaks) must be
judged a success, which also checks the judging."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pipeline import running_pipeline

from quality import report, synth
from quality.observer import Watch
from quality.personas import by_key
from quality.runner import CallLimits, Job, Target, run_all
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


async def test_the_harness_measures_a_few_calls(
    nats_server: NatsServer, database_url: str, tmp_path: Path
) -> None:
    voice = synth.voices()[0]
    personas = by_key()
    jobs = [
        Job(personas["sample"], synth.Condition(voice, 135)),
        Job(personas["hangs_up_early"], synth.Condition(voice, 175, "babble")),
        Job(personas["silent"], synth.Condition(voice, 135)),
    ]
    async with running_pipeline(
        nats_server.url, database_url, tmp_path, STT_PROVIDER="whisper", NO_INPUT_S="3"
    ) as ports:
        watch = await Watch.connect(nats_server.url)
        try:
            records = await run_all(
                jobs,
                Target("127.0.0.1", ports.audiosocket, ports.http),
                watch,
                concurrency=3,
                limits=CallLimits(max_lines=8, max_call_s=90),
                out=io.StringIO(),
            )
        finally:
            await watch.close()

    sample, hangs_up, silent = records
    assert not any(r.errors for r in records), [r.errors for r in records]
    assert hangs_up.success and hangs_up.outcome == "abandoned", hangs_up.dialog
    assert silent.success and silent.outcome == "no_input", silent.dialog
    assert not silent.no_input_while_talking and silent.turns == 0
    assert sample.outcome is not None and sample.turns >= 2, sample.dialog
    spoken = [ln for ln in sample.lines if ln.kind == "say"]
    assert all(ln.heard is not None and ln.ref_words for ln in spoken)
    assert all(0.0 < (ln.latency_s or 0.0) < 10.0 for ln in spoken[:2]), sample.lines

    figures = report.summarize(records)
    assert figures["calls"] == 3
    assert 0.0 <= figures["task_success"] <= 1.0
    assert 0.05 < figures["latency_p50_s"] <= figures["latency_p95_s"] < 10.0
    assert figures["wer_per_step"]["problem"]["lines"] >= 2
    assert all(w["wer"] >= 0.0 for w in figures["wer_per_step"].values())
    assert 0.0 < figures["welcome_latency_p50_s"] < 3.0
    assert figures["dead_air_longest_s"] >= figures["latency_p50_s"]
    assert figures["by_noise"].keys() == {"clean", "babble"}

    out = tmp_path / "quality.json"
    run = {"target": "test", "personas": 3, "matrix": "test", "concurrency": 3}
    report.write_json(out, figures, run, records, report.machine())
    stored = json.loads(out.read_text())
    assert stored["machine"]["nproc"] and len(stored["calls"]) == 3
    assert stored["figures"]["latency_n"] == figures["latency_n"]
