// One media connection to the server: our microphone out, the far side's audio in.

export class CallMedia {
  // `moreAudioElements`: one more receive-only audio m-line each, its track played there
  // (a supervisor hears the caller on `audioElement`, the operator on the next one).
  constructor({iceServers, audioElement, onState, onCandidate, moreAudioElements = []}) {
    this.pc = new RTCPeerConnection({iceServers: iceServers || []});
    this.audioElement = audioElement;
    this.moreAudioElements = moreAudioElements;
    this.onState = onState || (() => {});
    this.onCandidate = onCandidate || (() => {});
    this.sender = null;
    this.muted = false;
    this.remoteStream = null;
    this.pc.ontrack = (event) => {
      if (this.moreAudioElements.length) return this.playApart(event);
      this.remoteStream = event.streams[0] || new MediaStream([event.track]);
      this.audioElement.srcObject = this.remoteStream;
      this.audioElement.play().catch(() => {});
    };
    this.pc.onicecandidate = (event) => this.onCandidate(event.candidate);
    this.pc.onconnectionstatechange = () => this.onState(this.pc.connectionState);
  }

  // Our offer. `gather`: wait until every candidate is in it (REST signaling).
  async offer(stream, {gather = false} = {}) {
    const [track] = stream.getAudioTracks();
    this.sender = this.pc.addTrack(track, stream);
    track.enabled = !this.muted;
    const transceiver = this.pc.getTransceivers().find((t) => t.sender === this.sender);
    const opus = RTCRtpSender.getCapabilities?.("audio")?.codecs
      .filter((codec) => codec.mimeType.toLowerCase() === "audio/opus");
    if (opus?.length && transceiver?.setCodecPreferences) transceiver.setCodecPreferences(opus);
    for (const _ of this.moreAudioElements) {
      const more = this.pc.addTransceiver("audio", {direction: "recvonly"});
      if (opus?.length && more.setCodecPreferences) more.setCodecPreferences(opus);
    }
    await this.pc.setLocalDescription(await this.pc.createOffer());
    if (gather) await this.gathered();
    return this.pc.localDescription.sdp;
  }

  // Each received track in its own element, by m-line (the server sends them in one
  // stream: played together, only one of them would reach a Web Audio analyser).
  playApart(event) {
    const index = this.pc.getTransceivers().indexOf(event.transceiver);
    const element = index > 0 ? this.moreAudioElements[index - 1] : this.audioElement;
    if (!element) return;
    const stream = new MediaStream([event.track]);
    if (index === 0) this.remoteStream = stream;
    element.srcObject = stream;
    element.play().catch(() => {});
  }

  gathered() {
    return new Promise((resolve) => {
      if (this.pc.iceGatheringState === "complete") return resolve();
      const check = () => {
        if (this.pc.iceGatheringState === "complete") {
          this.pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      this.pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 5000);  // a stuck STUN/TURN server must not block the call
    });
  }

  async accept(answerSdp) {
    await this.pc.setRemoteDescription({type: "answer", sdp: answerSdp});
  }

  async useMicrophone(stream) {
    const [track] = stream.getAudioTracks();
    track.enabled = !this.muted;
    if (this.sender) await this.sender.replaceTrack(track);
  }

  setMuted(muted) {
    this.muted = muted;
    const track = this.sender?.track;
    if (track) track.enabled = !muted;
  }

  // RTT, jitter and loss of what we receive, from getStats().
  async quality() {
    const report = await this.pc.getStats();
    const result = {rttMs: null, jitterMs: null, lossPercent: null};
    report.forEach((stat) => {
      if (stat.type === "candidate-pair" && stat.nominated && stat.currentRoundTripTime != null) {
        result.rttMs = Math.round(stat.currentRoundTripTime * 1000);
      }
      if (stat.type === "inbound-rtp" && stat.kind === "audio") {
        if (stat.jitter != null) result.jitterMs = Math.round(stat.jitter * 1000);
        const received = stat.packetsReceived || 0;
        const lost = Math.max(0, stat.packetsLost || 0);
        if (received + lost > 0) result.lossPercent = (100 * lost) / (received + lost);
      }
    });
    return result;
  }

  close() {
    this.pc.onconnectionstatechange = null;
    this.pc.close();
    if (this.audioElement.srcObject === this.remoteStream) this.audioElement.srcObject = null;
    for (const element of this.moreAudioElements) element.srcObject = null;
  }
}

export const QUALITY_LIMITS = {rttMs: 300, jitterMs: 30, lossPercent: 3};

// Human warnings for a quality reading; empty when all is well.
export function qualityWarnings(reading) {
  const warnings = [];
  if (reading.rttMs != null && reading.rttMs > QUALITY_LIMITS.rttMs) {
    warnings.push(interpolate(gettext("high delay (%s ms)"), [reading.rttMs]));
  }
  if (reading.jitterMs != null && reading.jitterMs > QUALITY_LIMITS.jitterMs) {
    warnings.push(interpolate(gettext("unsteady audio (jitter %s ms)"), [reading.jitterMs]));
  }
  if (reading.lossPercent != null && reading.lossPercent > QUALITY_LIMITS.lossPercent) {
    warnings.push(interpolate(gettext("audio dropping (%s lost)"), [`${reading.lossPercent.toFixed(1)}%`]));
  }
  return warnings;
}
