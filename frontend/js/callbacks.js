// The dashboard's "Callback requests" and "Missed calls today", from the operators' feed:
// the snapshot's `callbacks` and `missed`, then `callback.*` events (each carries the
// request as it is now) and unanswered `call.ended`. Mine: the queues I am a member of
// (supervisors, who may handle every request, see all of them).

const PENDING = new Set(["open", "calling"]);
// Calls nobody talked to (a `cancelled` one only when the caller gave up in a queue).
const MISSED_REASONS = new Set(["missed", "rejected", "no_operator", "callback_requested",
                                "voicemail"]);
export const MISSED_LABELS = {
  missed: gettext("rang out"), rejected: gettext("rejected"), no_operator: gettext("nobody free"),
  callback_requested: gettext("asked for a callback"), voicemail: gettext("left a voicemail"),
  cancelled: gettext("gave up waiting"),
};

const startOfToday = () => new Date(new Date().setHours(0, 0, 0, 0)).getTime();

export function isMissed(call) {
  if (call.direction !== "inbound" || call.mode !== "bridge" || call.answeredAt) return false;
  if (["ringing", "active"].includes(call.state)) return false;
  return MISSED_REASONS.has(call.endReason) || (call.endReason === "cancelled" && Boolean(call.queue));
}

export class CallbackLists {
  // view: {api, item, button, link, callUrl, formatDuration, since, isMyQueue, isOnline,
  //        isBusy, callBack(callbackID, displayName), call(sessionId, displayName)}
  constructor(view) {
    this.view = view;
    this.requests = new Map();  // callbackID → request
    this.missed = new Map();    // callID → call summary
  }

  snapshot(data) {
    this.requests.clear();
    for (const request of data.callbacks || []) this.requests.set(request.callbackID, request);
    this.missed.clear();
    for (const call of data.missed || []) this.missed.set(call.callID, call);
  }

  event(data) {
    const request = data.callback;
    if (request && data.name.startsWith("callback.")) {
      if (PENDING.has(request.state)) this.requests.set(request.callbackID, request);
      else this.requests.delete(request.callbackID);
    }
    if (data.name === "call.ended" && data.call && isMissed(data.call)) {
      this.missed.set(data.call.callID, data.call);
    }
  }

  renderRequests(list, tickers) {
    const {view} = this;
    // Open first, then the longest waiting first: the order to call them back in.
    const mine = [...this.requests.values()].filter((r) => view.isMyQueue(r.queue))
      .sort((a, b) => (a.state !== "open") - (b.state !== "open") ||
                      Date.parse(a.requestedAt) - Date.parse(b.requestedAt));
    list.replaceChildren(...mine.map((request) => {
      const online = view.isOnline(request.sessionId);
      const li = view.item(request.displayName || "anonymous", "");
      li.dataset.callbackId = request.callbackID;
      const dot = document.createElement("span");
      dot.className = `dot ${online ? "online" : "offline"}`;
      dot.setAttribute("role", "img");
      dot.setAttribute("aria-label", online ? gettext("online") : gettext("offline"));
      dot.title = online ? gettext("their page is open") : gettext("offline: they cannot be called back now");
      li.querySelector(".who").prepend(dot);
      const meta = li.querySelector(".meta");
      const tick = () => {
        const parts = [request.queueName || request.queue,
                       interpolate(gettext("waiting %(duration)s"),
                                   {duration: view.formatDuration(view.since(request.requestedAt))}, true)];
        if (request.state === "calling") {
          parts.push(interpolate(gettext("calling (%(operator)s)"), {operator: request.handledBy}, true));
        }
        if (request.attempts) parts.push(interpolate(gettext("tried %(count)s×"), {count: request.attempts}, true));
        meta.textContent = parts.join(" · ");
      };
      tick();
      tickers.push(tick);
      if (request.note) {
        const note = document.createElement("q");
        note.className = "note";
        note.textContent = request.note;
        li.append(note);
      }
      if (request.state === "open") {
        const callBack = view.button(gettext("Call back"), "primary",
                                     () => view.callBack(request.callbackID, request.displayName));
        callBack.disabled = !online || view.isBusy();
        li.append(callBack);
      }
      li.append(view.button(gettext("Done"), "", () => view.api(
        "POST", `/callbacks/${request.callbackID}/close`, {outcome: "done"})));
      li.append(view.link(gettext("Details"), view.callUrl(request.callID)));
      return li;
    }));
  }

  renderMissed(list) {
    const {view} = this;
    const today = startOfToday();
    const mine = [...this.missed.values()]
      .filter((c) => Date.parse(c.endedAt) >= today && view.isMyQueue(c.queue))
      .sort((a, b) => Date.parse(b.endedAt) - Date.parse(a.endedAt));
    list.replaceChildren(...mine.map((call) => {
      const at = new Date(call.endedAt).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
      const reason = MISSED_LABELS[call.endReason] || call.endReason;
      const li = view.item(call.displayName || "anonymous",
                           [call.queueName || call.queue, reason, at].filter(Boolean).join(" · "));
      if (call.sessionId && view.isOnline(call.sessionId) && !view.isBusy(call.sessionId)) {
        li.append(view.button(gettext("Call"), "", () => view.call(call.sessionId, call.displayName)));
      }
      li.append(view.link(gettext("Details"), view.callUrl(call.callID)));
      return li;
    }));
  }
}
