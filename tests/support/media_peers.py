"""Real aiortc client peers for tests: distinct tones in, frequency detected out.

Clients gather only on 127.0.0.1 (the same wrapper as the media worker), with an explicit
empty iceServers list (aiortc's default is Google STUN, which stalls here).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from calls.media.aiortc_internals import advertise_host_addresses

SAMPLE_RATE = 48000
FRAME = 960


class ToneTrack(MediaStreamTrack):
    """A sine tone, paced in real time like a microphone."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._pts = 0
        self._start: float | None = None
        self.muted = False

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._pts / SAMPLE_RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self._pts) / SAMPLE_RATE
        level = 0.0 if self.muted else self.amplitude
        samples = (np.sin(2 * math.pi * self.frequency * t) * level * 32767).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += FRAME
        return frame


@dataclass
class AudioSink:
    """Collects the audio a client hears."""

    samples: list[np.ndarray] = field(default_factory=list)
    task: asyncio.Task | None = None
    # When each frame of `samples` arrived (event-loop time): a gap in the packets shows
    # as time between frames, not as silent samples.
    arrivals: list[float] = field(default_factory=list)

    def attach(self, track: MediaStreamTrack) -> None:
        self.task = asyncio.get_running_loop().create_task(self._drain(track))

    async def _drain(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            mono = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            self.samples.append(mono.astype(np.float64))
            self.arrivals.append(asyncio.get_running_loop().time())

    def clear(self) -> None:
        self.samples.clear()
        self.arrivals.clear()

    def switch_gap(self, before: float, after: float, quiet: float = 100.0) -> float | None:
        """Seconds between the last frame dominated by `before` and the first one after it
        dominated by `after` (less one frame): what a listener hears as the gap at a switch
        of sounds, silent frames and missing packets alike. None if there was no such
        switch."""
        last_before: int | None = None
        for index, chunk in enumerate(self.samples):
            if len(chunk) < 480 or float(np.sqrt(np.mean(chunk**2))) < quiet:
                continue
            spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk))))
            heard = float(np.fft.rfftfreq(len(chunk), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])
            step = SAMPLE_RATE / len(chunk)  # one FFT bin
            if abs(heard - before) <= step:
                last_before = index
            elif abs(heard - after) <= step and last_before is not None:
                frame_s = len(self.samples[last_before]) / SAMPLE_RATE
                return max(0.0, self.arrivals[index] - self.arrivals[last_before] - frame_s)
        return None

    @property
    def seconds(self) -> float:
        return sum(len(chunk) for chunk in self.samples) / SAMPLE_RATE

    def dominant_frequency(self, last_seconds: float = 1.0) -> float:
        data = np.concatenate(self.samples)[-int(last_seconds * SAMPLE_RATE) :]
        spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
        spectrum[: int(50 * len(data) / SAMPLE_RATE)] = 0  # ignore DC / rumble
        return float(np.fft.rfftfreq(len(data), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])

    def strength(self, frequency: float, last_seconds: float = 1.0) -> float:
        """How loud `frequency` is next to the loudest sound heard (1.0: it is the loudest)."""
        data = np.concatenate(self.samples)[-int(last_seconds * SAMPLE_RATE) :]
        spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
        freqs = np.fft.rfftfreq(len(data), 1 / SAMPLE_RATE)
        window = (freqs > frequency - 15) & (freqs < frequency + 15)
        return float(spectrum[window].max() / (spectrum.max() + 1e-9))

    def stands_out(self, frequency: float, last_seconds: float = 1.0, factor: float = 5.0) -> bool:
        """Whether a tone at `frequency` stands out of its neighbourhood: its peak (±15 Hz)
        at least `factor` times the median level 40 to 150 Hz away on either side. A tone
        does (by orders of magnitude); the broadband noise of glitchy audio (gaps and
        concealment on a loaded machine) lifts peak and neighbourhood alike."""
        data = np.concatenate(self.samples)[-int(last_seconds * SAMPLE_RATE) :]
        spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
        freqs = np.fft.rfftfreq(len(data), 1 / SAMPLE_RATE)
        peak = spectrum[(freqs > frequency - 15) & (freqs < frequency + 15)].max()
        away = np.abs(freqs - frequency)
        floor = float(np.median(spectrum[(away > 40) & (away < 150)]))
        return bool(peak > factor * (floor + 1e-9))

    def rms(self, last_seconds: float = 0.5) -> float:
        data = np.concatenate(self.samples)[-int(last_seconds * SAMPLE_RATE) :]
        return float(np.sqrt(np.mean(data**2)))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class ClientPeer:
    """A browser stand-in: sends a tone, hears the server."""

    def __init__(self, frequency: float, configuration: RTCConfiguration | None = None) -> None:
        advertise_host_addresses(["127.0.0.1"])
        self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self.tone = ToneTrack(frequency)
        self.sink = AudioSink()
        self.pc.addTrack(self.tone)
        self.pc.on("track", self.sink.attach)
        self.connected = asyncio.Event()

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()

    async def offer(self, trickle: bool = False) -> str:
        """The offer SDP; with `trickle`, without candidates (send them with candidates())."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        if trickle:
            sdp = re.sub(r"a=candidate:[^\r\n]*\r\n|a=end-of-candidates\r\n", "", sdp)
        return sdp

    def candidates(self) -> list[dict]:
        lines = re.findall(r"a=(candidate:[^\r\n]+)", self.pc.localDescription.sdp)
        return [{"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0} for line in lines]

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def wait_connected(self, within: float = 10.0) -> None:
        await asyncio.wait_for(self.connected.wait(), within)

    async def hears(self, frequency: float, within: float = 8.0, tolerance: float = 25.0) -> float:
        """Wait until the last second heard is dominated by `frequency`; returns what was heard."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        heard = 0.0
        self.sink.clear()
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            if self.sink.seconds >= 1.0 and self.sink.rms() > 300:
                heard = self.sink.dominant_frequency()
                if abs(heard - frequency) <= tolerance:
                    return heard
        raise AssertionError(f"expected to hear {frequency} Hz, heard {heard:.0f} Hz")

    async def hears_in_mix(
        self, frequency: float, within: float = 8.0, strength: float = 0.2
    ) -> None:
        """Wait until `frequency` is plainly part of the last half second heard, with other
        sounds over it (a file played over the other party's voice)."""
        await sink_hears_in_mix(self.sink, frequency, within, strength)

    async def close(self) -> None:
        await self.sink.stop()
        await self.pc.close()


async def sink_hears_in_mix(
    sink: AudioSink, frequency: float, within: float = 8.0, strength: float = 0.2
) -> None:
    """Wait until `frequency` is plainly part of the last half second `sink` heard."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    level = 0.0
    while loop.time() < deadline:
        await asyncio.sleep(0.1)
        if sink.seconds >= 0.5:
            level = sink.strength(frequency, last_seconds=0.5)
            if level > strength:
                return
    raise AssertionError(f"{frequency} Hz never rose above {strength} (last {level:.3f})")


HEARD, NOT_HEARD = 0.15, 0.02  # a tone's share of what an ear heard
QUIET = 100.0  # RMS of an ear that hears nothing (a tone here is ~6900)


def _ear_matches(
    sink: AudioSink, heard: tuple[float, ...], tones: tuple[float, ...], seconds: float
) -> bool:
    """Whether the last `seconds` `sink` heard are exactly `heard` (nothing audible if empty)."""
    if sink.seconds < seconds:
        return not heard and sink.seconds == 0
    if not heard:
        return sink.rms(last_seconds=seconds) < QUIET
    return all(
        (sink.strength(tone, last_seconds=seconds) > HEARD)
        if tone in heard
        else not _leaks(sink, tone, seconds)
        for tone in tones
    )


def _leaks(sink: AudioSink, tone: float, seconds: float) -> bool:
    """A tone an ear must not hear is in it: NOT_HEARD or more of the loudest sound, and
    a tone (not the noise floor of glitchy audio, which reaches a few % everywhere)."""
    return sink.strength(tone, last_seconds=seconds) >= NOT_HEARD and sink.stands_out(
        tone, last_seconds=seconds
    )


async def ears_are(
    expected: Iterable[tuple[AudioSink, Iterable[float]]],
    tones: Iterable[float],
    within: float = 8.0,
) -> None:
    """Each ear (sink) hears exactly its tones (several: mixed) and none of the other
    `tones`, over a whole second, once the change has reached every ear: a tone that
    stops must have stopped too (audio queued on a busy machine arrives late), so the
    wait is for every ear to match over its last half second."""
    pairs = [(sink, tuple(heard)) for sink, heard in expected]
    all_tones = tuple(tones)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not all(_ear_matches(sink, heard, all_tones, 0.5) for sink, heard in pairs):
        if loop.time() > deadline:
            break  # the checks below say which ear is wrong
        await asyncio.sleep(0.1)
    for sink, _ in pairs:
        sink.clear()
    await asyncio.sleep(1.2)
    for index, (sink, heard) in enumerate(pairs):
        if not heard:  # nothing audible (silence, or no packets at all)
            level = sink.rms(last_seconds=1.0) if sink.seconds else 0.0
            assert level < QUIET, f"ear {index} should hear nothing, RMS {level:.0f}"
            continue
        for tone in all_tones:
            share = sink.strength(tone, last_seconds=1.0)
            if tone in heard:
                assert share > HEARD, (index, tone, share)
            else:
                assert not _leaks(sink, tone, 1.0), (index, tone, share)


class TwoTrackPeer(ClientPeer):
    """A supervisor's browser (frontend/js/supervise.js): its tone out on the first audio
    m-line, a second one it only receives on; what each track brings in its own sink, in
    m-line order (`sinks[0]` the end user, `sinks[1]` the operator)."""

    def __init__(self, frequency: float) -> None:
        super().__init__(frequency)
        self.pc.remove_listener("track", self.sink.attach)
        self.pc.addTransceiver("audio", direction="recvonly")
        self.sinks = (self.sink, AudioSink())
        self.pc.on("track", self._attach)

    def _attach(self, track: MediaStreamTrack) -> None:
        transceivers = self.pc.getTransceivers()
        index = next(i for i, t in enumerate(transceivers) if t.receiver.track is track)
        self.sinks[index].attach(track)

    async def close(self) -> None:
        await self.sinks[1].stop()
        await super().close()


async def hear_each_other(*expected: tuple[ClientPeer, float]) -> None:
    """Each peer hears its tone (see `ClientPeer.hears`). They listen at the same time: a
    pair costs one second of audio, not two in a row."""
    await asyncio.gather(*(peer.hears(tone) for peer, tone in expected))


def opus_tone(frequency: float, seconds: float) -> list[bytes]:
    """A tone as Opus payloads of 20 ms (mono, 32 kbit/s)."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.bit_rate, encoder.format, encoder.layout = 32000, "s16", "mono"
    encoder.sample_rate, encoder.time_base = 48000, Fraction(1, 48000)
    t = np.arange(int(48000 * seconds)) / 48000
    pcm = (np.sin(2 * np.pi * frequency * t) * 8000).astype(np.int16)
    payloads = []
    for start in range(0, len(pcm) - 959, 960):
        frame = av.AudioFrame.from_ndarray(pcm[start : start + 960].reshape(1, -1), layout="mono")
        frame.sample_rate, frame.pts = 48000, start
        payloads += [bytes(packet) for packet in encoder.encode(frame)]
    return payloads
