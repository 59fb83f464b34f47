"""Speech for the transcript tests: a fixed two-party call spoken by espeak-ng (Debian's
package; tools/system-deps installs it) into the recorder's stereo WAV — the end user on
the left channel, the operator on the right, one speaking at a time with pauses — and
word error rate against what the script says.

The script has numbers and names on purpose: they are what tiny.en gets wrong most.
"""

from __future__ import annotations

import re
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calls.media.wav import WavWriter

RATE = 48000
PAUSE_S = 0.8  # between turns
VOICES = {0: "en-us", 1: "en-gb"}  # the end user, the operator
SPEED_WPM = 150

# (channel, words): 0 the end user, 1 the operator.
CALL_SCRIPT: list[tuple[int, str]] = [
    (1, "Good morning, you are speaking with Maria. How can I help you today?"),
    (0, "Hello Maria. I am calling about an order that has not arrived."),
    (1, "I am sorry to hear that. Can you give me the order number, please?"),
    (0, "Yes, the number is four five seven two nine."),
    (1, "Thank you. And what is the name on the order?"),
    (0, "My name is John Peterson."),
    (1, "I can see it. The parcel was sent on Monday to the wrong address."),
    (0, "That is strange. Can you send it again to my home?"),
    (1, "Of course. I will send a new parcel today, and it will arrive in two days."),
    (0, "Thank you very much. That is all I needed."),
    (1, "You are welcome, John. Have a nice day. Goodbye."),
]


@dataclass(frozen=True)
class SpokenCall:
    wav: Path
    seconds: float
    # What each channel says, in order, and when each turn starts (seconds).
    turns: list[tuple[int, float, str]]
    facts: dict[str, Any]  # the writer's: duration, size, SHA-256 (Recording.finish's result)

    def reference(self, channel: int) -> str:
        return " ".join(text for ch, _, text in self.turns if ch == channel)


def spoken(text: str, voice: str, work_dir: Path) -> np.ndarray:
    """`text` spoken by espeak-ng's `voice`, as 48 kHz float samples in [-1, 1]."""
    out = work_dir / "turn.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(SPEED_WPM), "-w", str(out), text],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with wave.open(str(out)) as turn:
        rate = turn.getframerate()
        samples = np.frombuffer(turn.readframes(turn.getnframes()), dtype="<i2") / 32768
    # espeak-ng speaks at 22.05 kHz: resample to the recorder's rate.
    times = np.arange(int(len(samples) * RATE / rate)) / RATE
    return np.interp(times, np.arange(len(samples)) / rate, samples)


def spoken_call(path: Path, script: list[tuple[int, str]] = CALL_SCRIPT) -> SpokenCall:
    """The script as the recorder's stereo WAV (its own writer) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pieces: list[np.ndarray] = [np.zeros((int(RATE * PAUSE_S), 2))]
    turns: list[tuple[int, float, str]] = []
    at = PAUSE_S
    for channel, text in script:
        voice = spoken(text, VOICES[channel], path.parent)
        stereo = np.zeros((len(voice) + int(RATE * PAUSE_S), 2))
        stereo[: len(voice), channel] = voice * 0.7
        turns.append((channel, at, text))
        pieces.append(stereo)
        at += len(stereo) / RATE
    samples = (np.concatenate(pieces) * 32767).astype("<i2")
    writer = WavWriter(path)
    writer.append(samples.tobytes())
    facts = writer.close().as_dict()
    return SpokenCall(path, len(samples) / RATE, turns, facts)


# --- Word error rate ---------------------------------------------------------------------

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def words(text: str) -> list[str]:
    """Lower case, no punctuation, digits spelled one by one (the script spells numbers
    digit by digit; the model may write them as figures)."""
    text = re.sub(r"\d", lambda digit: f" {_DIGITS[int(digit[0])]} ", text.lower())
    return re.sub(r"[^a-z' ]+", " ", text).replace("'", "").split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words (Levenshtein on words)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, hyp_word in enumerate(hyp, 1):
            current = min(row[j] + 1, row[j - 1] + 1, previous + (ref_word != hyp_word))
            previous, row[j] = row[j], current
    return row[-1] / max(len(ref), 1)
