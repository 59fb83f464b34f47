// The operators' dashboard: every call live (/ws/operator), and the operator's own audio.
// Actions use the REST API with the admin session (CSRF header); media offers are sent
// over REST with ICE gathering complete. The team: my availability, the queues with their
// waiting callers, every operator's status; a queued call shows Answer only to the
// operator it is offered to (the server refuses anyone else anyway). My call's notes and
// disposition: wrapup.js, during the call and in its wrap-up. Hold / Resume on my active
// call; every held call shows gettext("on hold") (for supervisors too) from the feed. Transfer my
// active call to an available operator or a queue (blind): I leave it and wrap up; a
// call transferred to me rings with Answer, a transferring call says to whom.
// Supervisors: Monitor / Whisper / Barge on other operators' active calls (supervise.js).
// Attended transfer: Consult first / Complete / Cancel, and the consult ringing (consult.js).
import {CallAlerts} from "./alerts.js";
import {CallbackLists} from "./callbacks.js";
import {ConsultControls} from "./consult.js";
import {LevelMeter, Microphone, formatDuration} from "./media.js";
import {CallMedia, qualityWarnings} from "./peer.js";
import {PreflightLines} from "./preflight-line.js";
import {Supervision} from "./supervise.js";
import {WrapUp} from "./wrapup.js";
import {VoicemailList} from "./voicemails.js";

const config = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);
// A translated text with its %(name)s placeholders filled in.
const fmt = (text, values) => interpolate(text, values, true);
const ui = {
  feed: $("feed"), status: $("my-status"), timer: $("my-timer"), problem: $("my-problem"),
  quality: $("quality"), hangup: $("my-hangup"), mute: $("my-mute"), hold: $("my-hold"),
  transfer: $("my-transfer"), transferTo: $("my-transfer-to"),
  microphone: $("microphone"),
  level: $("level"), farLevel: $("far-level"), remote: $("remote"),
  consent: $("my-consent"), consentGive: $("my-consent-give"), record: $("my-record"),
  recordStop: $("my-record-stop"), recordingLink: $("my-recording-link"),
  playback: $("my-playback"), playFile: $("play-file"), playTo: $("play-to"), play: $("play"),
  playStop: $("play-stop"),
  announce: $("announce"), activity: $("my-activity"),
  availability: [...document.querySelectorAll("[data-availability]")],
  lists: {
    ringing: $("ringing"), active: $("active"), online: $("online"), recent: $("recent"),
    queues: $("queues"), team: $("team"), callbacks: $("callbacks"), missed: $("missed"),
  },
};
const REASONS = {
  hangup: gettext("hung up"), missed: gettext("missed"), rejected: gettext("rejected"),
  cancelled: gettext("cancelled"),
  media_timeout: gettext("connection lost"), media_failure: gettext("connection failed"),
  server_restart: gettext("server restarted"), no_operator: gettext("nobody free"),
  callback_requested: gettext("callback requested"), voicemail: gettext("left a message"),
  transferred: gettext("you transferred it"),
  consult_ended: gettext("the consult ended"),
};

const preflightLines = new PreflightLines();
const calls = new Map();    // callID → call summary
const online = new Map();   // sessionId → session summary
const operators = new Map();  // username → {operator, displayName, availability, activity}
const queues = new Map();   // public id → {queue, name, strategy, members}
const ACTIVITIES = {idle: gettext("idle"), ringing: gettext("ringing"), busy: gettext("in a call"), wrap_up: gettext("wrapping up")};
const AVAILABILITIES = {available: gettext("available"), away: gettext("away"), offline: gettext("offline")};
const STRATEGIES = {
  ring_all: gettext("ring all"), longest_idle: gettext("longest idle"), round_robin: gettext("round robin"),
};
const availabilityText = (availability) => AVAILABILITIES[availability] || availability;
const alerts = new CallAlerts({onFocus: (callID) => focusAnswer(callID)});
const farMeter = new LevelMeter(ui.farLevel);
const microphone = new Microphone({
  select: ui.microphone, meter: ui.level, onProblem: (error) => problem(error.message),
});
let mine = null;            // {callID, media, answeredAt}
let idleText = gettext("Not in a call.");  // after a call: how it ended
let tickers = [];
let wrapUp = null;          // the notes box (made once `api` exists, below)
let supervision = null;     // supervisors' modes (made once `api` exists, below)
let consults = null;        // attended transfer (made once `api` exists, below)

// --- REST --------------------------------------------------------------------------------
async function api(method, path, body) {
  const response = await fetch(`/api${path}`, {
    method,
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRFToken": config.csrfToken},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.message || response.statusText), data);
  return data;
}

function problem(text) {
  ui.problem.textContent = text || "";
  ui.problem.hidden = !text;
}

// Said once to screen readers (the visible text changes in place).
function announce(text) {
  ui.announce.textContent = "";
  setTimeout(() => { ui.announce.textContent = text; }, 50);
}

// --- my availability -----------------------------------------------------------------------
const myStatus = () => operators.get(config.operator);
const myOffer = (call) => (call.offers || []).find((offer) => offer.operator === config.operator);
const queued = (call) => call.openAnswer === false;  // a queue without open answer
const inboundRinging = (call) => call.direction === "inbound" && call.state === "ringing" &&
                                 call.mode === "bridge";
// Answer is honest: a queued call only for the operator holding its offer.
const mayAnswer = (call) => inboundRinging(call) && (!queued(call) || Boolean(myOffer(call)));
// What rings for me (sound, notification): my offers, and while I am available and not in
// a call, the default queue's calls, which every operator may answer.
const ringsForMe = (call) => inboundRinging(call) && !mine && (
  Boolean(myOffer(call)) || (!queued(call) && myStatus()?.availability === "available"));

function describeStatus(status) {
  if (!status) return availabilityText("offline");
  return status.availability === "offline" && status.activity === "idle"
    ? availabilityText("offline")
    : fmt(gettext("%(availability)s, %(activity)s"), {
      availability: availabilityText(status.availability),
      activity: ACTIVITIES[status.activity] || status.activity,
    });
}

function renderMyAvailability() {
  const status = myStatus();
  const availability = status?.availability || "offline";
  for (const element of ui.availability) {
    element.setAttribute("aria-pressed", String(element.dataset.availability === availability));
  }
  ui.activity.textContent = fmt(gettext("You are %(status)s."), {status: describeStatus(status)});
}

async function setAvailability(availability) {
  alerts.prepare();  // a user gesture: the notification permission, the ring's audio
  problem("");
  const before = myStatus()?.availability;
  const status = await api("PUT", "/operators/me/status", {availability});
  operators.set(config.operator, {...myStatus(), ...status, operator: config.operator});
  // Said once: whichever comes first, this answer or the feed's operator.status.
  if (before !== status.availability) {
    announce(fmt(gettext("You are now %(availability)s."), {availability: availabilityText(status.availability)}));
  }
  render();
}

// --- my audio ------------------------------------------------------------------------------
const ensureMicrophone = () => microphone.ensure();

function setMyStatus(text) {
  ui.status.textContent = text;
  const inCall = Boolean(mine);
  ui.hangup.hidden = ui.mute.hidden = !inCall;
  ui.quality.hidden = !inCall;
  renderHold(mine ? calls.get(mine.callID) : null);
  renderTransfer(mine ? calls.get(mine.callID) : null);
  consults?.render(mine ? calls.get(mine.callID) : null, inCall);
}

// Transfer: my answered bridge call, to an operator who is free now or to a queue (the
// server checks both again and says why not).
function renderTransfer(call) {
  const transferable = Boolean(mine && call && call.state === "active" && call.mode === "bridge");
  ui.transfer.hidden = !transferable;
  if (!transferable) return;
  const chosen = ui.transferTo.value;
  const options = [];
  for (const status of operators.values()) {
    if (status.operator === config.operator) continue;
    if (status.availability !== "available" || status.activity !== "idle") continue;
    options.push(option(`operator:${status.operator}`, `${operatorName(status.operator)} (operator)`));
  }
  for (const queue of queues.values()) {
    options.push(option(`queue:${queue.queue}`, `${queue.name || queue.queue} (queue)`));
  }
  ui.transferTo.replaceChildren(...options);
  if (options.some((o) => o.value === chosen)) ui.transferTo.value = chosen;
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

// Hold / Resume: one toggle, on my answered bridge call only (the server checks it is mine).
function renderHold(call) {
  const holdable = Boolean(mine && call && call.state === "active" && call.mode === "bridge");
  const held = holdable && Boolean(call.heldAt);
  ui.hold.hidden = !holdable;
  ui.hold.textContent = held ? gettext("Resume") : gettext("Hold");
  ui.hold.setAttribute("aria-pressed", String(held));
}

// Connect (or reconnect) my media to `callID`: answers it when it rings for operators.
async function connectMine(callID) {
  problem("");
  const stream = await ensureMicrophone();
  mine?.media?.close();
  const media = new CallMedia({
    iceServers: config.iceServers,
    audioElement: ui.remote,
    onState: (state) => {
      if (mine?.media !== media) return;
      if (state === "connected") {
        farMeter.attach(media.remoteStream);
        renderMine();
      } else if (state === "failed") {
        setMyStatus(gettext("Reconnecting…"));
        connectMine(callID).catch((error) => problem(error.message));
      }
    },
  });
  media.setMuted(ui.mute.getAttribute("aria-pressed") === "true");
  mine = {callID, media, answeredAt: mine?.callID === callID ? mine.answeredAt : null};
  idleText = gettext("Not in a call.");
  wrapUp.open(calls.get(callID) || {callID});
  setMyStatus(gettext("Connecting…"));
  const sdp = await media.offer(stream, {gather: true});
  try {
    const answer = await api("POST", `/calls/${callID}/webrtc/offer`, {type: "offer", sdp});
    await media.accept(answer.sdp);
  } catch (error) {
    media.close();
    if (mine?.media === media) mine = null;
    setMyStatus(gettext("Not in a call."));
    throw error;
  }
}

function renderRecording(call) {
  const active = Boolean(mine && call && call.state === "active");
  const missing = call?.consentMissing || [];
  const recording = call?.recording;
  const running = recording?.state === "recording";
  ui.consent.hidden = !active;
  ui.consent.textContent = missing.length
    ? fmt(gettext("Recording consent missing from: %(parties)s."), {parties: missing.join(", ")})
    : gettext("Recording consent: everyone agreed.");
  ui.consentGive.hidden = !active || !missing.includes("operator");
  ui.consentGive.title = config.consentText;
  ui.record.hidden = !active || running;
  ui.recordStop.hidden = !active || !running;
  ui.recordingLink.hidden = !recording;
  ui.playback.hidden = !active || config.audioFiles.length === 0;
  if (recording) {
    ui.recordingLink.href = config.recordingAdminUrl.replace(
      "00000000-0000-0000-0000-000000000000", recording.recordingID);
    ui.recordingLink.textContent = running ? gettext("● Recording") : gettext("Recording");
  }
}

function renderMine() {
  renderRecording(mine ? calls.get(mine.callID) : null);
  if (!mine) {
    setMyStatus(idleText);
    ui.timer.hidden = true;
    return;
  }
  const call = calls.get(mine.callID);
  const who = call?.displayName || gettext("the end user");
  const consulting = consults.status(call, who, operatorName);
  if (consulting) {
    setMyStatus(consulting);
    ui.timer.hidden = false;
  } else if (!call || call.state === "ringing") {
    setMyStatus(fmt(gettext("Calling %(name)s…"), {name: who}));
  } else if (call.heldAt) {
    setMyStatus(fmt(gettext("%(name)s is on hold: they hear the hold audio, not you; you hear nothing."), {name: who}));
    ui.timer.hidden = false;
  } else if (mine.media?.pc.connectionState === "connected") {
    setMyStatus(fmt(gettext("Talking with %(name)s."), {name: who}));
    ui.timer.hidden = false;
  } else {
    setMyStatus(gettext("Connecting…"));
  }
}

function endMine(reason) {
  const ended = mine && calls.get(mine.callID);
  if (ended) wrapUp.ended(ended);  // its notes stay open for the wrap-up
  mine?.media?.close();
  farMeter.detach();
  mine = null;
  ui.timer.hidden = true;
  idleText = reason ? fmt(gettext("Call ended (%(reason)s)."), {reason: REASONS[reason] || reason})
    : gettext("Not in a call.");
  setMyStatus(idleText);
}

async function hangUp(callID) {
  if (mine?.callID === callID && consults.isTarget(calls.get(callID))) {
    // Consulted: hanging up ends the consult, not the caller's call.
    await consults.cancel(callID).catch((error) => problem(error.message));
    endMine("consult_ended");
    return;
  }
  try {
    await api("POST", `/calls/${callID}/hangup`);
  } catch (error) {
    problem(error.message);
  }
  if (mine?.callID === callID) endMine("hangup");
}

// --- the lists -----------------------------------------------------------------------------
function button(label, className, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  if (className) element.className = className;
  element.addEventListener("click", () => {
    element.disabled = true;
    Promise.resolve(onClick()).catch((error) => problem(error.message))
      .finally(() => { element.disabled = false; });
  });
  return element;
}

function link(text, href) {
  const element = document.createElement("a");
  element.href = href;
  element.textContent = text;
  return element;
}

function item(whoText, metaText, ...actions) {
  const li = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = whoText;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = metaText;
  li.append(who, meta, ...actions);
  return li;
}

const callUrl = (id) => config.callAdminUrl.replace("00000000-0000-0000-0000-000000000000", id);
const voicemails = new VoicemailList({
  list: $("voicemails"), empty: $("voicemails-empty"), note: $("voicemails-note"), callUrl,
});
const since = (iso) => (Date.now() - Date.parse(iso)) / 1000;
const name = (call) => call.displayName || (call.mode === "echo" ? gettext("echo test") : gettext("anonymous"));
const until = (iso) => (Date.parse(iso) - Date.now()) / 1000;
const operatorName = (username) => operators.get(username)?.displayName || username;

// What a gateway client (PolyAI's) said of its call: its numbers and its own callSid.
function callerDetails(call) {
  const parts = [];
  if (call.caller) parts.push(fmt(gettext("from %(number)s"), {number: call.caller}));
  if (call.callee) parts.push(fmt(gettext("to %(number)s"), {number: call.callee}));
  if (call.externalId) parts.push(`callSid ${call.externalId}`);
  return parts.join(" · ");
}

function withCallerDetails(li, call) {
  const text = callerDetails(call);
  if (text) {
    const details = document.createElement("span");
    details.className = "details";
    details.textContent = text;
    li.querySelector(".who").after(details);
  }
  return li;
}

// How long a caller has waited (from the server's timestamps) and whom it rings.
function ringingMeta(call, offer, withQueue = true) {
  const waited = formatDuration(since(call.queuedAt || call.createdAt));
  if (call.direction !== "inbound" || !call.queue) return waited;
  const parts = withQueue ? [call.queueName || call.queue] : [];
  if (call.transferring) parts.push(fmt(gettext("transferred to %(target)s"), {target: call.transferring}));
  parts.push(fmt(gettext("waiting %(duration)s"), {duration: waited}));
  if (offer) {
    parts.push(fmt(gettext("answer within %(duration)s"), {duration: formatDuration(until(offer.deadline))}));
  } else if (queued(call)) {
    const rung = (call.offers || []).map((o) => operatorName(o.operator));
    parts.push(rung.length ? fmt(gettext("ringing %(operators)s"), {operators: rung.join(", ")})
      : gettext("waiting for a free operator"));
  }
  return parts.join(" · ");
}

function badge(text, kind) {
  const element = document.createElement("span");
  element.className = `badge ${kind}`;
  element.textContent = text;
  return element;
}

function operatorItem(status) {
  const you = status.operator === config.operator ? ` ${gettext("(you)")}` : "";
  const li = item(`${status.displayName || status.operator}${you}`, "",
                  badge(availabilityText(status.availability), status.availability),
                  badge(ACTIVITIES[status.activity] || status.activity, status.activity));
  li.querySelector(".meta").remove();
  li.setAttribute("aria-label", `${status.displayName || status.operator}${you}: ${describeStatus(status)}`);
  return li;
}

function renderQueues(all) {
  const waitingCalls = all.filter((c) => c.queue && inboundRinging(c))
    .sort((a, b) => Date.parse(a.queuedAt || a.createdAt) - Date.parse(b.queuedAt || b.createdAt));
  for (const call of waitingCalls) {  // a queue made since the snapshot
    if (!queues.has(call.queue)) queues.set(call.queue, {queue: call.queue, name: call.queueName, members: []});
  }
  ui.lists.queues.replaceChildren(...[...queues.values()].map((queue) => {
    const section = document.createElement("section");
    section.className = "queue";
    section.setAttribute("aria-label", fmt(gettext("Queue %(queue)s"), {queue: queue.name}));
    const waiting = waitingCalls.filter((c) => c.queue === queue.queue);
    const members = (queue.members || []).map((username) => operators.get(username)).filter(Boolean);
    const free = members.filter((m) => m.availability === "available" && m.activity === "idle");
    const title = document.createElement("h3");
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = fmt(gettext("%(waiting)s waiting · %(free)s of %(members)s free"),
                           {waiting: waiting.length, free: free.length, members: members.length}) +
                       (queue.strategy ? ` · ${STRATEGIES[queue.strategy] || queue.strategy}` : "");
    title.append(queue.name, meta);
    const list = document.createElement("ul");
    list.className = "calls";
    list.append(...waiting.map((call) => {
      const li = item(name(call), "");
      const tick = () => { li.querySelector(".meta").textContent = ringingMeta(call, myOffer(call), false); };
      tick();
      tickers.push(tick);
      return li;
    }));
    const who = document.createElement("ul");
    who.className = "calls members";
    who.setAttribute("aria-label", fmt(gettext("Members of %(queue)s"), {queue: queue.name}));
    who.append(...members.map(operatorItem));
    section.append(title, list, who);
    return section;
  }));
}

function render() {
  const all = [...calls.values()].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
  const ringing = all.filter((c) => c.state === "ringing");
  const active = all.filter((c) => c.state === "active");
  // Echo calls (a caller's microphone test or preflight) are no conversation: not listed.
  const ended = all.filter((c) => !["ringing", "active"].includes(c.state) && c.mode !== "echo")
    .slice(0, 20);
  tickers = [];

  ui.lists.ringing.replaceChildren(...all.filter((c) => consults.ringsForMe(c)).map(consultItem),
                                   ...ringing.map((call) => {
    const inbound = call.direction === "inbound";
    const li = item(inbound ? fmt(gettext("%(name)s is calling"), {name: name(call)})
      : fmt(gettext("Calling %(name)s"), {name: name(call)}), "");
    li.dataset.callId = call.callID;
    const meta = li.querySelector(".meta");
    const offer = myOffer(call);
    const tick = () => { meta.textContent = ringingMeta(call, offer); };
    tick();
    tickers.push(tick);
    if (inbound && mayAnswer(call)) {
      li.append(button(gettext("Answer"), "primary", () => connectMine(call.callID)));
      // Rejecting a queued call would end it for the caller: declining passes it on.
      if (queued(call)) {
        li.append(button(gettext("Decline"), "", () => api("POST", `/calls/${call.callID}/decline`)));
      } else {
        li.append(button(gettext("Reject"), "danger", () => api("POST", `/calls/${call.callID}/reject`)));
      }
    } else if (inbound) {
      // Not mine to answer: a supervisor sees whom it rings, no buttons that would fail.
    } else {
      li.append(button(gettext("Cancel"), "danger", () => hangUp(call.callID)));
    }
    li.append(link(gettext("Details"), callUrl(call.callID)));
    preflightLines.attach(li, call);  // the caller's preflight report, if their page made one
    return withCallerDetails(li, call);
  }));

  ui.lists.active.replaceChildren(...active.map((call) => {
    const started = call.answeredAt || call.createdAt;
    const li = item(`${name(call)}${call.operator ? ` ↔ ${call.operator}` : ""}`,
                    formatDuration(since(started)),
                    button(gettext("Hang up"), "danger", () => hangUp(call.callID)),
                    link(gettext("Details"), callUrl(call.callID)));
    li.dataset.callId = call.callID;
    const meta = li.querySelector(".meta");
    if (call.heldAt) li.insertBefore(badge(gettext("on hold"), "held"), meta);
    if (call.consult) {
      const consulted = fmt(call.consult.answered ? gettext("consulting %(operator)s")
        : gettext("consulting %(operator)s (ringing)"), {operator: operatorName(call.consult.operator)});
      li.insertBefore(badge(consulted, "consulting"), meta);
    }
    if (call.supervisorMode) {
      li.insertBefore(badge(`${call.supervisorMode}: ${call.supervisedBy || gettext("a supervisor")}`,
                            "supervised"), meta);
    }
    if (config.callSupervisor) {
      li.append(...supervision.controls(call, {me: config.operator, button}));
    }
    // While held, how long the caller has been waiting on hold.
    const tick = () => {
      meta.textContent = call.heldAt
        ? fmt(gettext("%(duration)s · held %(held)s"), {duration: formatDuration(since(started)), held: formatDuration(since(call.heldAt))})
        : formatDuration(since(started));
    };
    tick();
    tickers.push(tick);
    return withCallerDetails(li, call);
  }));

  ui.lists.online.replaceChildren(...[...online.values()].map((session) => {
    const busy = all.some((c) => c.sessionId === session.sessionId && c.mode === "bridge" &&
                                 ["ringing", "active", "voicemail"].includes(c.state));
    const li = item(session.displayName || gettext("anonymous"), busy ? gettext("in a call") : availabilityText("available"));
    if (!busy) {
      li.append(button(gettext("Call"), "primary", () => callSession(session.sessionId, session.displayName)));
    }
    return li;
  }));

  renderQueues(all);
  callbackLists.renderRequests(ui.lists.callbacks, tickers);
  callbackLists.renderMissed(ui.lists.missed);
  ui.lists.team.replaceChildren(...[...operators.values()].map(operatorItem));

  ui.lists.recent.replaceChildren(...ended.map((call) => {
    const talk = call.answeredAt && call.endedAt
      ? formatDuration((Date.parse(call.endedAt) - Date.parse(call.answeredAt)) / 1000) : "—";
    const how = REASONS[call.endReason] || call.endReason ||
      (call.state === "voicemail" ? gettext("in voicemail") : call.state);
    const outcome = [how, talk];
    if (call.disposition) outcome.push(call.disposition);
    const actions = [link(gettext("Details"), callUrl(call.callID))];
    if (call.answeredAt && (call.operator === config.operator || config.notesSupervisor)) {
      actions.unshift(button(gettext("Notes"), "", () => wrapUp.open(call, {ended: true})));
    }
    return withCallerDetails(item(name(call), outcome.join(" · "), ...actions), call);
  }));

  for (const [key, list] of Object.entries(ui.lists)) {
    document.querySelector(`[data-empty-for="${key}"]`).hidden = list.children.length > 0;
  }
  renderMyAvailability();
  renderMine();
  alerts.update(all.filter((c) => ringsForMe(c) || consults.ringsForMe(c)).map((call) => ({
    callID: call.callID, caller: name(call), queueName: call.queue ? call.queueName : "",
  })));
}

// A consult ringing for me: who consults me about whom; Answer connects my media to it.
function consultItem(call) {
  const by = operatorName(call.consult.by.replace(/^operator /, ""));
  const li = item(fmt(gettext("%(operator)s wants to consult you"), {operator: by}),
                  fmt(gettext("about %(name)s, on hold"), {name: name(call)}),
                  button(gettext("Answer"), "primary", () => connectMine(call.callID)),
                  button(gettext("Decline"), "", () => api("POST", `/calls/${call.callID}/decline`)));
  li.dataset.callId = call.callID;
  li.dataset.consult = "true";
  return li;
}

// --- calling end users (the online list, missed calls, callback requests) ----------------
async function callSession(sessionId, displayName) {
  const call = await api("POST", "/calls", {sessionId});
  calls.set(call.callID, {...call, displayName, legs: call.legs});
  await connectMine(call.callID);
}

async function callBack(callbackID, displayName) {
  const call = await api("POST", `/callbacks/${callbackID}/call`);
  calls.set(call.callID, {...call, displayName, legs: call.legs});
  await connectMine(call.callID);
}

const sessionBusy = (sessionId) => [...calls.values()].some(
  (c) => c.sessionId === sessionId && c.mode === "bridge" && ["ringing", "active"].includes(c.state));
const isMyQueue = (queue) => {
  if (config.seesAllQueues || !queue) return true;
  const known = queues.get(queue);
  return !known || (known.members || []).includes(config.operator);
};
const callbackLists = new CallbackLists({
  api, item, button, link, callUrl, formatDuration, since, isMyQueue,
  isOnline: (sessionId) => Boolean(sessionId) && online.has(sessionId),
  // I am in a call already (one at a time), or (with a session) that end user is.
  isBusy: (sessionId) => Boolean(mine) || (sessionId ? sessionBusy(sessionId) : false),
  callBack, call: callSession,
});

function focusAnswer(callID) {
  ui.lists.ringing.querySelector(`li[data-call-id="${callID}"] button.primary`)?.focus();
}

// --- server-side call quality (quality.warning / quality.cleared on the feed) -------------
// callID → Map(leg role → the MOS that raised its warning): legs with a warning now.
const serverQuality = new Map();

function onQualityEvent(data, callID) {
  if (data.name === "call.ended") {
    serverQuality.delete(callID);
    return;
  }
  if (data.name !== "quality.warning" && data.name !== "quality.cleared") return;
  const legs = serverQuality.get(callID) || new Map();
  if (data.name === "quality.warning") legs.set(data.role, data.value);
  else legs.delete(data.role);
  if (legs.size) serverQuality.set(callID, legs);
  else serverQuality.delete(callID);
}

// The server's warnings about my call's legs, in words (empty: none).
function serverQualityWarnings(callID) {
  const whose = {
    user: gettext("The caller's connection is poor (server MOS %(mos)s)"),
    operator: gettext("Your connection is poor (server MOS %(mos)s)"),
    supervisor: gettext("The supervisor's connection is poor (server MOS %(mos)s)"),
  };
  return [...(serverQuality.get(callID) || new Map())].map(([role, mos]) =>
    fmt(whose[role] || `${role}: MOS %(mos)s`, {mos: Number(mos).toFixed(1)}));
}

// --- the live feed -------------------------------------------------------------------------
function onFeed(message) {
  if (message.type === "snapshot") {
    calls.clear();
    online.clear();
    for (const call of [...message.data.calls, ...message.data.recent]) calls.set(call.callID, call);
    for (const session of message.data.online) online.set(session.sessionId, session);
    operators.clear();
    for (const status of message.data.operators || []) operators.set(status.operator, status);
    queues.clear();
    for (const queue of message.data.queues || []) queues.set(queue.queue, queue);
    callbackLists.snapshot(message.data);
  } else if (message.type === "event") {
    const data = message.data;
    callbackLists.event(data);
    if (data.name === "callback.requested" && isMyQueue(data.callback?.queue)) {
      announce(fmt(gettext("%(name)s asked to be called back (%(queue)s)."), {
        name: data.callback.displayName || gettext("A caller"), queue: data.callback.queueName}));
    }
    if (data.name === "operator.status") operatorChanged(data);
    if (data.name === "queue.offered" && data.operator === config.operator) {
      announce(fmt(gettext("%(name)s is calling you from %(queue)s: %(seconds)s seconds to answer."), {
        name: name(data.call), queue: data.call.queueName || data.queue,
        seconds: Math.round(until(data.deadline))}));
    }
    if (data.name === "queue.offer_ended" && data.operator === config.operator &&
        data.outcome !== "answered") {
      announce(fmt(data.outcome === "missed" ? gettext("You missed %(name)s's call.")
        : gettext("%(name)s's call no longer rings for you."), {name: name(data.call)}));
    }
    if (data.call) calls.set(data.call.callID, data.call);
    onQualityEvent(data, message.callSid);
    supervision.onEvent(data, message.callSid);
    voicemails.onEvent(data);
    if (data.name === "presence.online") online.set(data.session.sessionId, data.session);
    if (data.name === "presence.offline") online.delete(data.session.sessionId);
    if (data.name === "call.answered" && mine?.callID === message.callSid) mine.answeredAt = Date.now();
    if (data.name === "call.consult_answered" && mine?.callID === message.callSid &&
        data.toOperator === config.operator) mine.answeredAt = Date.now();
    if (data.name === "call.ended" && mine?.callID === message.callSid) endMine(data.reason);
    // Transferred (here, or from another of my tabs): the server closed my media.
    if (data.name === "call.transfer_started" && mine?.callID === message.callSid &&
        data.call?.operator !== config.operator) endMine("transferred");
    if (consults.endsMine(data, message.callSid, mine?.callID)) {
      endMine(data.name === "call.consult_completed" ? "transferred" : "consult_ended");
    }
    if (["call.held", "call.resumed"].includes(data.name) && mine?.callID === message.callSid) {
      announce(fmt(data.name === "call.held" ? gettext("%(name)s is on hold.")
        : gettext("%(name)s is back with you."), {name: name(data.call)}));
    }
  }
  render();
}

function connectFeed(attempt = 0) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${config.feedPath}`);
  socket.onopen = () => {
    attempt = 0;
    ui.feed.textContent = gettext("Live.");
    ui.feed.dataset.live = "true";
  };
  socket.onmessage = (event) => onFeed(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (event.code === 4401) {  // logged out, deactivated or no longer an operator
      ui.feed.textContent = gettext("Signed out: log in again to see the live feed.");
      ui.feed.dataset.live = "false";
      return;
    }
    ui.feed.textContent = gettext("Live feed lost: reconnecting…");
    ui.feed.dataset.live = "false";
    setTimeout(() => connectFeed(attempt + 1), Math.min(10000, 500 * 2 ** attempt));
  };
}

function operatorChanged(data) {
  const {name: _event, ...status} = data;
  const before = operators.get(status.operator);
  operators.set(status.operator, {...before, ...status});
  if (status.operator === config.operator && before?.availability !== status.availability) {
    announce(fmt(gettext("You are now %(availability)s."), {availability: availabilityText(status.availability)}));
  }
}

// --- controls and timers -------------------------------------------------------------------
wrapUp = new WrapUp({api, notesMaxChars: config.notesMaxChars,
                     supervisor: config.notesSupervisor});
supervision = new Supervision({api, iceServers: config.iceServers,
                               microphone: ensureMicrophone, announce});
consults = new ConsultControls({
  api, me: config.operator, announce, problem,
  ui: {
    transfer: ui.transfer, hold: ui.hold, consulting: $("my-consulting"),
    complete: $("my-consult-complete"),
    hideForTarget: [ui.consent, ui.record, ui.recordStop, ui.consentGive, ui.playback],
  },
});
$("my-consult").addEventListener("click", async () => {
  if (!mine || !ui.transferTo.value) return;
  const [kind, ...rest] = ui.transferTo.value.split(":");
  try {
    const call = await consults.start(mine.callID, {[kind]: rest.join(":")});
    calls.set(call.callID, {...calls.get(call.callID), heldAt: call.heldAt});
    render();
  } catch (error) {
    problem(error.message);
  }
});
$("my-consult-complete").addEventListener("click", () => {
  if (mine) consults.complete(mine.callID).catch((error) => problem(error.message));
});
$("my-consult-cancel").addEventListener("click", () => {
  if (mine) consults.cancel(mine.callID).catch((error) => problem(error.message));
});
ui.hangup.addEventListener("click", () => mine && hangUp(mine.callID));
ui.transfer.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!mine || !ui.transferTo.value) return;
  problem("");
  const [kind, ...rest] = ui.transferTo.value.split(":");
  const callID = mine.callID;
  const submit = ui.transfer.querySelector("button");
  submit.disabled = true;
  try {
    const call = await api("POST", `/calls/${callID}/transfer`, {to: {[kind]: rest.join(":")}});
    calls.set(call.callID, {...calls.get(call.callID), ...call});
    if (mine?.callID === callID) endMine("transferred");
    announce(`Transferred ${name(call)}.`);
    render();
  } catch (error) {
    problem(error.message);
  } finally {
    submit.disabled = false;
  }
});
ui.hold.addEventListener("click", async () => {
  if (!mine) return;
  problem("");
  const verb = ui.hold.getAttribute("aria-pressed") === "true" ? "resume" : "hold";
  ui.hold.disabled = true;
  try {
    const call = await api("POST", `/calls/${mine.callID}/${verb}`);
    // The feed says it too; this answer draws it at once (with what the feed knows).
    calls.set(call.callID, {...calls.get(call.callID), heldAt: call.heldAt});
    render();
  } catch (error) {
    problem(error.message);
  } finally {
    ui.hold.disabled = false;
  }
});
for (const element of ui.availability) {
  element.addEventListener("click", () => {
    setAvailability(element.dataset.availability).catch((error) => problem(error.message));
  });
}
ui.consentGive.addEventListener("click", async () => {
  if (!mine) return;
  try {
    await api("POST", `/calls/${mine.callID}/consent`,
              {granted: true, policy: config.consentVersion, via: "dashboard"});
  } catch (error) {
    problem(error.message);
  }
});
ui.record.addEventListener("click", async () => {
  if (!mine) return;
  problem("");
  try {
    await api("POST", `/calls/${mine.callID}/record`);
  } catch (error) {
    problem(error.code === "CONSENT_REQUIRED"
      ? fmt(gettext("Not recording: %(reason)s. The end user has been asked."), {reason: error.message})
      : error.message);
  }
});
ui.playFile.replaceChildren(...config.audioFiles.map((audio) => {
  const option = document.createElement("option");
  option.value = audio.name;
  option.textContent = fmt(gettext("%(name)s (%(seconds)s s)"), {name: audio.name, seconds: audio.durationS});
  return option;
}));
ui.play.addEventListener("click", async () => {
  if (!mine) return;
  problem("");
  try {
    await api("POST", `/calls/${mine.callID}/play`, {file: ui.playFile.value, to: ui.playTo.value});
  } catch (error) {
    problem(error.message);
  }
});
ui.playStop.addEventListener("click", async () => {
  if (!mine) return;
  try {
    await api("POST", `/calls/${mine.callID}/play/stop`);
  } catch (error) {
    problem(error.message);
  }
});
ui.recordStop.addEventListener("click", async () => {
  if (!mine) return;
  try {
    await api("POST", `/calls/${mine.callID}/record/stop`);
  } catch (error) {
    problem(error.message);
  }
});
ui.mute.addEventListener("click", () => {
  const muted = ui.mute.getAttribute("aria-pressed") !== "true";
  ui.mute.setAttribute("aria-pressed", String(muted));
  ui.mute.textContent = muted ? gettext("Unmute") : "Mute";
  mine?.media?.setMuted(muted);
});
ui.microphone.addEventListener("change", () =>
  microphone.change(async (stream) => mine?.media?.useMicrophone(stream)));

setInterval(async () => {
  for (const tick of tickers) tick();
  if (mine?.answeredAt) ui.timer.textContent = formatDuration((Date.now() - mine.answeredAt) / 1000);
  if (mine?.media?.pc.connectionState === "connected") {
    const reading = await mine.media.quality();
    const warnings = [...serverQualityWarnings(mine.callID), ...qualityWarnings(reading)];
    const parts = [interpolate(gettext("RTT %s ms"), [reading.rttMs ?? "–"]),
                   interpolate(gettext("jitter %s ms"), [reading.jitterMs ?? "–"]),
                   interpolate(gettext("loss %s"), [
                     reading.lossPercent == null ? "–" : `${reading.lossPercent.toFixed(1)}%`])];
    ui.quality.textContent = (warnings.length
      ? fmt(gettext("Warning: %(warnings)s."), {warnings: warnings.join(", ")}) + " " : "") +
                             parts.join(" · ");
    ui.quality.classList.toggle("warning", warnings.length > 0);
  }
}, 1000);

connectFeed();
voicemails.refresh();
ensureMicrophone().catch(() => {});
render();
