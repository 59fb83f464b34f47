// Microphone access, human error messages, level meters and the ring tone.

const MIC_KEY = "callbridge.microphone";
// Tests that measure tones turn processing off (it squashes a steady tone); people keep it.
const PROCESSING_KEY = "callbridge.audioProcessing";

export function audioProcessingEnabled() {
  return localStorage.getItem(PROCESSING_KEY) !== "off";
}

export function rememberedMicrophone() {
  return localStorage.getItem(MIC_KEY) || "";
}

export function rememberMicrophone(deviceId) {
  localStorage.setItem(MIC_KEY, deviceId);
}

export class MicrophoneError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

// What to tell a person when the microphone cannot be opened.
export function describeMicrophoneError(error) {
  if (error instanceof MicrophoneError) return error;
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return new MicrophoneError("denied",
      gettext("Microphone access is blocked. Allow the microphone for this site in your " +
              "browser's address bar, then press Try again."));
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return new MicrophoneError("missing",
      gettext("No microphone was found. Connect one, then press Try again."));
  }
  if (name === "NotReadableError" || name === "AbortError") {
    return new MicrophoneError("busy",
      gettext("Your microphone is busy in another application. Close it there, then press Try again."));
  }
  return new MicrophoneError("unknown", interpolate(
    gettext("The microphone could not be opened (%(error)s)."), {error: name || error}, true));
}

export async function openMicrophone(deviceId = rememberedMicrophone()) {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    throw new MicrophoneError("insecure",
      gettext("This page is not secure (it must be opened over HTTPS), so the browser will " +
              "not let it use your microphone."));
  }
  const processing = audioProcessingEnabled();
  const audio = {
    echoCancellation: processing,
    noiseSuppression: processing,
    autoGainControl: processing,
  };
  if (deviceId) audio.deviceId = {ideal: deviceId};
  try {
    return await navigator.mediaDevices.getUserMedia({audio, video: false});
  } catch (error) {
    throw describeMicrophoneError(error);
  }
}

export async function listMicrophones() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((device) => device.kind === "audioinput");
}

// Fill a <select> with the microphones, keeping the chosen one selected.
export async function fillMicrophoneSelect(select, current) {
  const microphones = await listMicrophones();
  select.replaceChildren(...microphones.map((device, index) => {
    const option = document.createElement("option");
    option.value = device.deviceId;
    option.textContent = device.label ||
      interpolate(gettext("Microphone %(number)s"), {number: index + 1}, true);
    option.selected = device.deviceId === current;
    return option;
  }));
  select.disabled = microphones.length === 0;
}

// The page's microphone: opened on demand, metered, listed, switched.
export class Microphone {
  constructor({select, meter, onProblem}) {
    this.select = select;
    this.meter = new LevelMeter(meter);
    this.onProblem = onProblem;
    this.stream = null;
  }

  async ensure() {
    if (this.stream) return this.stream;
    try {
      this.stream = await openMicrophone(this.select.value || rememberedMicrophone());
    } catch (error) {
      this.stream = null;
      this.onProblem(error);
      throw error;
    }
    this.meter.attach(this.stream);
    const deviceId = this.stream.getAudioTracks()[0].getSettings().deviceId;
    await fillMicrophoneSelect(this.select, deviceId);
    return this.stream;
  }

  // Switch to the selected device; `use(stream)` hands it to a running call.
  async change(use) {
    rememberMicrophone(this.select.value);
    const old = this.stream;
    this.stream = null;
    try {
      await use(await this.ensure());
      old?.getTracks().forEach((track) => track.stop());
    } catch (error) {
      this.stream = old;
    }
  }
}

let sharedContext = null;
export function audioContext() {
  sharedContext ??= new AudioContext();
  if (sharedContext.state === "suspended") sharedContext.resume().catch(() => {});
  return sharedContext;
}

// A live level meter for a stream, drawn into a <meter> (0..1).
export class LevelMeter {
  constructor(meter) {
    this.meter = meter;
    this.level = 0;
    this.source = null;
    this.analyser = null;
    this.frame = null;
  }

  attach(stream) {
    this.detach();
    if (!stream || stream.getAudioTracks().length === 0) return;
    const context = audioContext();
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 1024;
    this.source = context.createMediaStreamSource(stream);
    this.source.connect(this.analyser);
    const samples = new Float32Array(this.analyser.fftSize);
    const draw = () => {
      this.analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const sample of samples) sum += sample * sample;
      const rms = Math.sqrt(sum / samples.length);
      this.level = Math.min(1, rms * 4);
      this.meter.value = this.level;
      this.frame = requestAnimationFrame(draw);
    };
    draw();
  }

  detach() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.source?.disconnect();
    this.source = this.analyser = this.frame = null;
    this.level = 0;
    this.meter.value = 0;
  }
}

// A phone-like ring: two short tones every 2.5 s, synthesized (no audio file).
export class Ringer {
  constructor() {
    this.timer = null;
  }

  start() {
    if (this.timer) return;
    const ring = () => {
      const context = audioContext();
      for (const offset of [0, 0.45]) {
        const oscillator = context.createOscillator();
        const gain = context.createGain();
        oscillator.frequency.value = 480;
        gain.gain.value = 0.08;
        oscillator.connect(gain).connect(context.destination);
        oscillator.start(context.currentTime + offset);
        oscillator.stop(context.currentTime + offset + 0.35);
      }
    };
    ring();
    this.timer = setInterval(ring, 2500);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }
}

export function formatDuration(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(whole / 60);
  return `${minutes}:${String(whole % 60).padStart(2, "0")}`;
}
