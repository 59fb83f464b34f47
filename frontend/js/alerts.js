// Telling an operator that a call rings for them when they are looking elsewhere: a ring
// (synthesized, media.js's Ringer), a browser notification and a flashing tab title while
// the tab is in the background. Only for calls that are theirs to answer: the dashboard
// decides which (an offer to them, or the default queue's open answer while available).
import {Ringer, audioContext} from "./media.js";

const FLASH_MS = 1000;

export class CallAlerts {
  constructor({onFocus} = {}) {
    this.ringing = new Map();  // callID → {caller, queueName, notification}
    this.ringer = new Ringer();
    this.title = document.title;
    this.flashTimer = null;
    this.onFocus = onFocus;
    document.addEventListener("visibilitychange", () => this.visibilityChanged());
  }

  // Asked from a user gesture (the availability buttons): browsers ignore (or penalize)
  // permission prompts on load, and an AudioContext only starts after a gesture.
  prepare() {
    audioContext();
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
  }

  get hidden() {
    return document.visibilityState === "hidden";
  }

  // The calls ringing for me now, as {callID, caller, queueName}: alerts follow the set.
  update(calls) {
    const now = new Map(calls.map((call) => [call.callID, call]));
    for (const [callID, alert] of this.ringing) {
      if (!now.has(callID)) {
        alert.notification?.close();
        this.ringing.delete(callID);
      }
    }
    for (const [callID, call] of now) {
      if (this.ringing.has(callID)) continue;
      this.ringing.set(callID, {...call, notification: this.hidden ? this.notify(call) : null});
    }
    if (this.ringing.size > 0) this.ringer.start();
    else this.ringer.stop();
    this.flash();
  }

  notify(call) {
    if (!("Notification" in window) || Notification.permission !== "granted") return null;
    try {
      const body = call.queueName
        ? interpolate(gettext("Waiting in %(queue)s"), {queue: call.queueName}, true)
        : gettext("Calling the operators");
      const notification = new Notification(interpolate(gettext("%(name)s is calling"), {name: call.caller}, true), {
        body, tag: `callbridge-${call.callID}`, requireInteraction: true,
      });
      notification.onclick = () => {
        window.focus();
        notification.close();
        this.onFocus?.(call.callID);
      };
      return notification;
    } catch {
      return null;  // e.g. a platform that only notifies from a service worker
    }
  }

  flash() {
    const first = this.ringing.values().next().value;
    if (!this.hidden || !first) {
      clearInterval(this.flashTimer);
      this.flashTimer = null;
      document.title = this.title;
      return;
    }
    if (this.flashTimer) return;
    let on = false;
    const toggle = () => {
      const ringing = this.ringing.values().next().value;
      on = !on;
      document.title = on && ringing
        ? `☎ ${interpolate(gettext("%(name)s is calling"), {name: ringing.caller}, true)}` : this.title;
    };
    toggle();
    this.flashTimer = setInterval(toggle, FLASH_MS);
  }

  visibilityChanged() {
    if (this.hidden) {
      // Gone to the background while ringing: notify for what rings now.
      for (const alert of this.ringing.values()) alert.notification ??= this.notify(alert);
    } else {
      for (const alert of this.ringing.values()) {
        alert.notification?.close();
        alert.notification = null;
      }
    }
    this.flash();
  }
}
