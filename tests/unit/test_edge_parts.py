"""The edge's small pure parts: config validation, energy VAD, resampling to 8 kHz."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import EdgeConfig
from edge.resample import ToPipelineRate
from edge.vad import EnergyVad, level_dbfs
from events.env import ConfigError


def tone(n_samples: int, rate: int = 8000, level: int = 8000) -> bytes:
    t = np.arange(n_samples) / rate
    return (np.sin(2 * np.pi * 440 * t) * level).astype("<i2").tobytes()


def test_defaults_match_the_design() -> None:
    cfg = EdgeConfig.from_env({})
    assert (cfg.host, cfg.port, cfg.http_port, cfg.metrics_port) == ("0.0.0.0", 9090, 8080, 9091)
    assert cfg.max_concurrent_calls == 20 and cfg.allowed_peers == () and cfg.api_token is None
    assert cfg.nats_url == "nats://127.0.0.1:4222" and str(cfg.cache_dir) == "assets/cache"
    assert cfg.audio_in_batch_ms == 100


def test_env_is_read_and_peers_canonicalised() -> None:
    cfg = EdgeConfig.from_env(
        {"ALLOWED_PEERS": "10.0.0.1, ::ffff:10.0.0.2", "API_TOKEN": "t", "AUDIO_IN_BATCH_MS": "60"}
    )
    assert cfg.allowed_ips == {"10.0.0.1", "10.0.0.2"}
    assert cfg.api_token == "t" and cfg.audio_in_batch_ms == 60


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ALLOWED_PEERS": "asterisk.local"}, "ALLOWED_PEERS"),
        ({"AUDIO_IN_BATCH_MS": "30"}, "AUDIO_IN_BATCH_MS"),
        ({"AUDIOSOCKET_PORT": "70000"}, "AUDIOSOCKET_PORT"),
        ({"MAX_CONCURRENT_CALLS": "0"}, "MAX_CONCURRENT_CALLS"),
        ({"EDGE_BARGEIN_VAD": "maybe"}, "EDGE_BARGEIN_VAD"),
        ({"EDGE_PREBUFFER_MS": "200"}, "EDGE_PREBUFFER_MAX_MS"),  # above the most it may grow
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        EdgeConfig.from_env(env)


def test_vad_reports_onset_after_the_minimum_and_offset_after_the_hangover() -> None:
    vad = EnergyVad(threshold_dbfs=-35, min_speech_ms=60, hangover_ms=100)
    loud, quiet = tone(160), bytes(320)
    assert [vad.feed(loud) for _ in range(5)] == [None, None, "onset", None, None]
    # A pause between words (60 ms) is not the end of the line.
    assert [vad.feed(quiet) for _ in range(3)] == [None, None, None]
    assert [vad.feed(loud) for _ in range(2)] == [None, None]
    assert vad.speaking
    assert [vad.feed(quiet) for _ in range(5)] == [None, None, None, None, "offset"]
    assert not vad.speaking
    assert [vad.feed(loud) for _ in range(3)] == [None, None, "onset"]  # the next line


def test_level_of_silence_and_full_scale() -> None:
    assert level_dbfs(bytes(320)) == float("-inf")
    assert level_dbfs(np.full(160, 32767, "<i2").tobytes()) == pytest.approx(0, abs=0.01)


def test_slin16_is_halved_and_8k_passes_through_with_odd_bytes_kept() -> None:
    r = ToPipelineRate()
    out = b"".join(r.convert(tone(320, 16000), 16000) for _ in range(50))
    assert abs(len(out) - 50 * 320) <= 64  # the filter holds a few samples
    r8 = ToPipelineRate()
    assert len(r8.convert(b"\x01" * 275, 8000)) == 274
    assert len(r8.convert(b"\x01", 8000)) == 2  # the carried byte completes a sample
