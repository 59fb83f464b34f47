// The voicemail stage of the end-user page (`queue.voicemail`): the notice, "Leave a
// message" (pressing it is the consent to be recorded), then "Send" with a countdown of
// the longest message; "Hang up" all along. Other choices (a callback request) go beside
// the buttons in #voicemail-choices.
import {formatDuration} from "./media.js";

export class VoicemailPanel {
  constructor(elements, {onStart, onSend, onHangup}) {
    this.ui = elements;
    this.timer = null;
    this.callSid = null;
    elements.start.addEventListener("click", () => {
      elements.start.disabled = true;  // once: a second press would be refused anyway
      onStart(this.callSid);
    });
    elements.send.addEventListener("click", () => {
      elements.send.disabled = true;
      onSend(this.callSid);
    });
    for (const button of elements.hangups) button.addEventListener("click", () => onHangup(this.callSid));
  }

  get open() {
    return !this.ui.section.hidden;
  }

  // The stage began: show the notice and the choices.
  offer(callSid, data) {
    this.callSid = callSid;
    this.ui.text.textContent = data.consentText || "";
    this.ui.version.textContent = data.policyVersion || "";
    this.ui.start.disabled = false;
    this.ui.send.disabled = false;
    this.ui.choices.hidden = false;
    this.ui.recording.hidden = true;
    this.ui.section.hidden = false;
    this.countdown(this.ui.choiceLeft, data.choiceDeadline);
  }

  // Our message is being recorded (`recording.started`, kind voicemail) until `deadline`.
  recording(data) {
    this.ui.choices.hidden = true;
    this.ui.recording.hidden = false;
    this.countdown(this.ui.left, data.deadline, data.maxS);
  }

  // A start that was refused (the stage ended meanwhile, no audio yet): may press again.
  refused() {
    this.ui.start.disabled = false;
  }

  countdown(element, deadline, fallbackS = null) {
    clearInterval(this.timer);
    const end = deadline ? Date.parse(deadline) : Date.now() + (fallbackS || 0) * 1000;
    const tick = () => {
      element.textContent = formatDuration(Math.max(0, (end - Date.now()) / 1000));
    };
    tick();
    this.timer = setInterval(tick, 500);
  }

  close() {
    clearInterval(this.timer);
    this.timer = null;
    this.callSid = null;
    this.ui.section.hidden = true;
  }
}
