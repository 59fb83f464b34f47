// Supervisor modes on the dashboard (supervisors only; the server checks anyway): Monitor /
// Whisper / Barge on other operators' active calls, Leave on the one being supervised.
// The supervisor's own media connection (REST offer, ICE gathered) plays what the server
// sends: the caller and the operator on two tracks of their own (two audio m-lines, each
// party's packets forwarded as they came), and in a barge or a whisper it carries the
// supervisor's voice.
import {CallMedia} from "./peer.js";

export const MODES = [
  ["monitor", gettext("Monitor"), gettext("hear both parties; nobody hears you")],
  ["whisper", gettext("Whisper"), gettext("the operator hears you, the caller does not")],
  ["barge", gettext("Barge"), gettext("three-way: everyone hears everyone")],
];

function audioElement(id) {
  const audio = document.createElement("audio");
  audio.autoplay = true;
  audio.id = id;
  document.body.append(audio);
  return audio;
}

export class Supervision {
  constructor({api, iceServers, microphone, announce}) {
    this.api = api;
    this.iceServers = iceServers;
    this.microphone = microphone;  // () => Promise<MediaStream>
    this.announce = announce;
    this.current = null;  // {callID, media}
    this.audio = audioElement("supervisor-audio");  // the caller
    this.operatorAudio = audioElement("supervisor-audio-operator");
  }

  // Join in `mode` or switch to it (no new offer while connected).
  async choose(callID, mode) {
    if (this.current && this.current.callID !== callID) await this.leave();
    await this.api("POST", `/calls/${callID}/supervise`, {mode});
    if (this.current?.callID !== callID) await this.connect(callID);
    this.announce(`Supervising: ${mode}.`);
  }

  async connect(callID) {
    const stream = await this.microphone();
    const media = new CallMedia({
      iceServers: this.iceServers,
      audioElement: this.audio,
      moreAudioElements: [this.operatorAudio],
      onState: (state) => {
        if (state === "failed" && this.current?.media === media) {
          this.connect(callID).catch(() => {});  // the leg reconnects while supervising
        }
      },
    });
    this.current?.media.close();
    this.current = {callID, media};
    const sdp = await media.offer(stream, {gather: true});
    const answer = await this.api("POST", `/calls/${callID}/webrtc/offer`, {type: "offer", sdp});
    await media.accept(answer.sdp);
  }

  async leave() {
    const current = this.current;
    if (!current) return;
    this.drop();
    await this.api("POST", `/calls/${current.callID}/supervise/stop`).catch(() => {});
  }

  drop() {
    this.current?.media.close();
    this.current = null;
  }

  // The feed: a supervision or a call that is over closes our media.
  onEvent(data, callID) {
    if (this.current?.callID !== callID) return;
    if (data.name === "call.ended" ||
        (data.name === "supervisor.left" && !data.call?.supervisorMode)) {
      this.drop();
    }
  }

  // The buttons of one active call row: none on my own call or for non-supervisors.
  controls(call, {me, button}) {
    if (call.mode !== "bridge" || call.operator === me) return [];
    const mineNow = this.current?.callID === call.callID;
    const someoneElse = call.supervisorMode && !mineNow;
    if (someoneElse) return [];
    const buttons = MODES.map(([mode, label, title]) => {
      const element = button(label, call.supervisorMode === mode && mineNow ? "primary" : "",
                             () => this.choose(call.callID, mode));
      element.title = title;
      element.setAttribute("aria-pressed", String(mineNow && call.supervisorMode === mode));
      element.dataset.supervise = mode;
      return element;
    });
    if (mineNow) buttons.push(button(gettext("Leave"), "danger", () => this.leave()));
    return buttons;
  }
}
