// The dashboard's Voicemails panel: GET /api/voicemails (newest first), refreshed when the
// feed says a message was left. Listening goes through the admin's audited stream (one
// access row per listen; `calls.listen_recording`), so it is an <audio> that loads nothing
// until played.
import {formatDuration} from "./media.js";

export class VoicemailList {
  constructor({list, empty, note, callUrl}) {
    this.list = list;
    this.empty = empty;
    this.note = note;
    this.callUrl = callUrl;
    this.loading = null;
  }

  // The feed's events: a message left (or one being left) changes the list.
  onEvent(data) {
    if (data.name === "voicemail.left") this.refresh();
  }

  refresh() {
    this.loading ??= this.load().finally(() => { this.loading = null; });
    return this.loading;
  }

  async load() {
    const response = await fetch("/api/voicemails?limit=20", {credentials: "same-origin"});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      this.note.textContent = response.status === 403
        ? gettext("You may not list voicemails (it needs the permission to view recordings).")
        : body.message || gettext("Voicemails could not be loaded.");
      this.note.hidden = false;
      this.list.replaceChildren();
      this.empty.hidden = true;
      return;
    }
    this.note.hidden = true;
    this.list.replaceChildren(...body.map((voicemail) => this.item(voicemail)));
    this.empty.hidden = body.length > 0;
  }

  item(voicemail) {
    const li = document.createElement("li");
    li.dataset.recordingId = voicemail.recordingID;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = voicemail.callerName || "anonymous";
    const meta = document.createElement("span");
    meta.className = "meta";
    const when = new Date(voicemail.startedAt).toLocaleString();
    const length = voicemail.durationS === null ? gettext("recording…") : formatDuration(voicemail.durationS);
    meta.textContent = `${voicemail.queueName || voicemail.queue || ""} · ${when} · ${length}`;
    const heard = document.createElement("span");
    heard.className = voicemail.listened ? "badge" : "badge new";
    heard.textContent = voicemail.listened ? gettext("heard") : gettext("new");
    li.append(who, meta, heard);
    if (voicemail.audioUrl) {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = voicemail.audioUrl;
      audio.setAttribute("aria-label", interpolate(gettext("Message from %(name)s"), {name: who.textContent}, true));
      audio.addEventListener("play", () => {
        heard.className = "badge";
        heard.textContent = gettext("heard");
      }, {once: true});
      li.append(audio);
    }
    const details = document.createElement("a");
    details.href = this.callUrl(voicemail.callID);
    details.textContent = gettext("Details");
    li.append(details);
    return li;
  }
}
