"""Headless Debian chromium for tests: fake microphone tones, loopback-only networking.

Chromium only offers loopback candidates with --allow-loopback-in-peer-connection, and
then also gathers on real interfaces; so browser tests run in a network namespace that has
only `lo` (`tools/in-loopback-netns`, which `make test` uses for the whole suite).
"""

from __future__ import annotations

import os
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"


def write_tone_wav(path: Path, frequency: float, seconds: float = 30.0) -> Path:
    """A 48 kHz mono 16-bit sine, the fake microphone's input."""
    rate = 48000
    t = np.arange(int(rate * seconds)) / rate
    samples = (np.sin(2 * np.pi * frequency * t) * 0.5 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def only_loopback() -> bool:
    # /proc/net/dev follows this process's network namespace (/sys/class/net does not).
    with open("/proc/net/dev") as table:
        interfaces = [line.split(":")[0].strip() for line in table.readlines()[2:]]
    return interfaces == ["lo"]


def require_browser_environment() -> None:
    problems = []
    if not os.path.exists(CHROMIUM):
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    if not only_loopback():
        problems.append("not in a loopback-only network namespace (tools/in-loopback-netns)")
    if not problems:
        return
    message = "; ".join(problems)
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def chromium_args(microphone_wav: Path | None, allow_microphone: bool = True) -> list[str]:
    args = [
        "--no-sandbox",
        # Answer the permission prompt: allow (fake UI) or deny, as a person would.
        "--use-fake-ui-for-media-stream" if allow_microphone else "--deny-permission-prompts",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-gpu",
    ]
    if microphone_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={microphone_wav}")
    return args


async def launch(
    playwright: Any, microphone_wav: Path | None, allow_microphone: bool = True
) -> Any:
    return await playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=chromium_args(microphone_wav, allow_microphone),
    )


# Listens to an <audio> element's stream with an AnalyserNode (in headless chromium
# inbound-rtp audioLevel stays 0) and returns the loudest frequency every 100 ms.
# The level (dB, the loudest of the bins within 15 Hz) of each of `tones` in what an audio
# element plays, averaged over `samples` readings 100 ms apart: for ears that hear a mix.
LEVELS_OF_AUDIO_ELEMENT = """
async ({selector, tones, samples = 15}) => {
  const audio = document.querySelector(selector);
  const context = new AudioContext();
  await context.resume();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  context.createMediaStreamSource(audio.srcObject).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const hzPerBin = context.sampleRate / analyser.fftSize;
  const sums = tones.map(() => 0);
  for (let i = 0; i < samples; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    analyser.getFloatFrequencyData(bins);
    tones.forEach((tone, t) => {
      let best = -Infinity;
      const from = Math.floor((tone - 15) / hzPerBin), to = Math.ceil((tone + 15) / hzPerBin);
      for (let k = from; k <= to; k++) best = Math.max(best, bins[k]);
      sums[t] += Math.max(best, -160);
    });
  }
  await context.close();  // a context left running keeps pulling the stream
  return sums.map((sum) => sum / samples);
}
"""

PEAKS_OF_AUDIO_ELEMENT = """
async ({selector, samples, smoothing = 0.8}) => {
  const audio = document.querySelector(selector);
  const context = new AudioContext();
  await context.resume();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  // 0.8 (WebAudio's default) carries ~2 dB per reading over: a sound that just stopped
  // lingers for seconds above -90 dB. 0: each reading is only what the window holds now.
  analyser.smoothingTimeConstant = smoothing;
  context.createMediaStreamSource(audio.srcObject).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const peaks = [];
  for (let i = 0; i < samples; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    analyser.getFloatFrequencyData(bins);
    let best = 1;
    for (let k = 2; k < bins.length; k++) if (bins[k] > bins[best]) best = k;
    peaks.push({hz: best * context.sampleRate / analyser.fftSize, db: bins[best]});
  }
  await context.close();  // a context left running keeps pulling the stream
  return peaks;
}
"""
