"""Stereo MP3 of a call with PyAV (libmp3lame ships in its wheel), and its verification.

Runs in the archive's process pool: `archive_call` builds both tracks, encodes them to
`<path>.part`, makes it durable, decodes it back to check it (two channels, 8 kHz, the call's
duration) and only then renames it into place. The raw audio may be deleted only on a result
whose `verified` is true; a run killed anywhere in here leaves at most a `.part` file that
the next run overwrites.

Encoder choices (bench/archive.py measures them): 8 kHz like the call itself (MPEG-2.5),
plain stereo rather than joint stereo (the two sides are different people: mid/side coding
gains nothing and could blur one side into the other), LAME quality 7 ("fast", ample for
telephone speech), constant bitrate.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from archiver.timeline import CallAudio, Samples, stereo
from events.audio import SAMPLE_RATE

DURATION_TOLERANCE_S = 0.05  # LAME's gapless header makes decoding sample-exact; a frame's slack
_FRAME_SAMPLES = 1152 * 8  # samples handed to the encoder at a time
_LAME_QUALITY = "7"


class Mp3Error(RuntimeError):
    pass


@dataclass(frozen=True)
class Probe:
    channels: int
    sample_rate: int
    samples: int

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class Job:
    audio: CallAudio
    path: Path
    bitrate: int


@dataclass(frozen=True)
class Result:
    call_id: str
    path: Path
    duration_s: float = 0.0
    size: int = 0
    sha256: str = ""
    verified: bool = False
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    cpu_s: float = 0.0  # CPU time of the pool process on this call


def encode(left: Samples, right: Samples, path: Path, bitrate: int) -> None:
    """Write `left`/`right` (int16, 8 kHz) as a stereo MP3 at `path`."""
    planar = np.stack([left, right])
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="stereo")
        stream.codec_context.bit_rate = bitrate
        stream.codec_context.options = {"joint_stereo": "0", "compression_level": _LAME_QUALITY}
        pts = 0
        for start in range(0, planar.shape[1], _FRAME_SAMPLES):
            chunk = np.ascontiguousarray(planar[:, start : start + _FRAME_SAMPLES])
            frame = av.AudioFrame.from_ndarray(chunk, format="s16p", layout="stereo")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pts
            pts += frame.samples
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def decode(path: Path) -> tuple[Samples, Samples, int]:
    """Both channels as int16 and the sample rate."""
    chunks: list[np.ndarray] = []
    rate = 0
    try:
        with av.open(str(path)) as f:
            for frame in f.decode(audio=0):
                rate = frame.sample_rate
                x = frame.to_ndarray()  # planar float: (channels, samples)
                if x.shape[0] != 2:
                    raise Mp3Error(f"{path}: {x.shape[0]} channel(s), expected 2")
                chunks.append(x)
    except av.error.FFmpegError as e:
        raise Mp3Error(f"{path} does not decode: {e}") from e
    if not chunks:
        raise Mp3Error(f"{path}: no audio")
    both = np.concatenate(chunks, axis=1)
    if both.dtype.kind == "f":
        both = np.clip(np.round(both * 32768), -32768, 32767)
    both = both.astype(np.int16)
    return both[0], both[1], rate


def probe(path: Path) -> Probe:
    """Decode the whole file (not the header's estimate): channels, rate, samples."""
    channels = rate = samples = 0
    with av.open(str(path)) as f:
        for frame in f.decode(audio=0):
            channels, rate = len(frame.layout.channels), frame.sample_rate
            samples += frame.samples
    return Probe(channels, rate, samples)


def verify(path: Path, expected_s: float) -> Probe:
    """Raise Mp3Error unless `path` decodes to stereo 8 kHz audio of `expected_s`."""
    try:
        p = probe(path)
    except (av.error.FFmpegError, OSError) as e:
        raise Mp3Error(f"{path} does not decode: {e}") from e
    if p.channels != 2 or p.sample_rate != SAMPLE_RATE:
        raise Mp3Error(f"{path}: {p.channels} channel(s) at {p.sample_rate} Hz")
    if abs(p.duration_s - expected_s) > DURATION_TOLERANCE_S:
        raise Mp3Error(
            f"{path}: decodes to {p.duration_s:.3f} s, the call lasted {expected_s:.3f} s"
        )
    return p


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def archive_call(job: Job) -> Result:
    """Tracks -> `<path>.part` -> fsync -> decoded and checked -> renamed. In a pool process."""
    call = job.audio
    part = job.path.with_name(job.path.name + ".part")
    cpu0 = time.process_time()
    try:
        job.path.parent.mkdir(parents=True, exist_ok=True)
        left, right, notes = stereo(call)
        encode(left, right, part, job.bitrate)
        _fsync(part)
        p = verify(part, len(left) / SAMPLE_RATE)
        digest = sha256(part)
        os.replace(part, job.path)
        _fsync(job.path.parent)
        return Result(
            call.call_id,
            job.path,
            duration_s=p.duration_s,
            size=job.path.stat().st_size,
            sha256=digest,
            verified=True,
            notes=notes,
            cpu_s=time.process_time() - cpu0,
        )
    except (Mp3Error, av.error.FFmpegError, OSError, ValueError) as e:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        return Result(call.call_id, job.path, error=f"{type(e).__name__}: {e}")


def check_file(call_id: str, path: Path, duration_s: float, digest: str) -> Result:
    """An MP3 archived by an earlier run, checked again before its raw audio is deleted."""
    try:
        p = verify(path, duration_s)
        if sha256(path) != digest:
            raise Mp3Error(f"{path} changed since it was archived (sha256 differs)")
    except (Mp3Error, OSError) as e:
        return Result(call_id, path, error=str(e))
    return Result(call_id, path, p.duration_s, path.stat().st_size, digest, verified=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
