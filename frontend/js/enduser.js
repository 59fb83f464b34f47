// The end-user call page: call the operators, take their calls, test the microphone; says
// when the operator has put the call on hold (call.held / call.resumed, or on registering),
// "Transferring you…" from a transfer until the next operator takes the call, and when a
// supervisor listens or joins in (supervisor.*, where the deployment tells).
import {pageConfig, tellHost} from "./embedded.js";
import {Microphone, Ringer, formatDuration} from "./media.js";
import {CallMedia} from "./peer.js";
import {echoStats, fileReport, microphoneLevel, showResult, turnCheck} from "./preflight.js";
import {SignalSocket} from "./signaling.js";
import {VoicemailPanel} from "./voicemail.js";

const $ = (id) => document.getElementById(id);
const config = await pageConfig(JSON.parse($("config").textContent)).catch((error) => {
  // Framed without a usable token (or not framed at all): say so, tell the host, stop here.
  document.body.dataset.state = "unavailable";
  $("status").textContent = gettext("The call cannot start.");
  $("problem").textContent = error.message;
  $("problem").hidden = false;
  tellHost("error", {code: error.code || "HANDLER_ERROR", message: error.message});
  return new Promise(() => {});  // never settles: the rest of this module never runs
});
if (config.embed && config.displayName) $("greeting").textContent =
  interpolate(gettext("Hello, %(name)s."), {name: config.displayName}, true);
const ui = {
  status: $("status"), problem: $("problem"), timer: $("timer"), incoming: $("incoming"),
  call: $("call"), test: $("test"), hangup: $("hangup"), mute: $("mute"), retry: $("retry"),
  accept: $("accept"), decline: $("decline"), microphone: $("microphone"), level: $("level"),
  remote: $("remote"), note: $("note"), place: $("place"), held: $("held"),
  transferring: $("transferring"),
  supervisor: $("supervisor"),
  recording: $("recording"), consent: $("consent"),
  consentText: $("consent-text"), consentVersion: $("consent-version"),
  consentYes: $("consent-yes"), consentNo: $("consent-no"), withdraw: $("withdraw"),
  callback: $("callback"), callbackNote: $("callback-note"), callbackAsk: $("callback-ask"),
  preflight: $("preflight"), preflightRun: $("preflight-run"),
};
ui.consentText.textContent = config.consentText;
ui.consentVersion.textContent = config.consentVersion;

const END_REASONS = {
  hangup: gettext("The call has ended."),
  missed: gettext("Nobody answered. Please try again later."),
  rejected: gettext("The call was declined."),
  cancelled: gettext("The call was cancelled."),
  media_timeout: gettext("The connection was lost."),
  media_failure: gettext("The connection failed."),
  server_restart: gettext("The service restarted. Please call again."),
  callback_requested: gettext("We will call you back. Keep this page open to take our call."),
  no_operator: gettext("Nobody could take your call. Please try again later."),
  voicemail: gettext("Thank you: your message was sent."),
};

const ringer = new Ringer();
const microphone = new Microphone({
  select: ui.microphone,
  meter: ui.level,
  onProblem: (error) => {
    setProblem(error.message);
    tellHost("error", {code: "MICROPHONE", kind: error.kind, message: error.message});
    setState("mic-problem", gettext("Your microphone is not available."));
  },
});
const voicemail = new VoicemailPanel({
  section: $("voicemail"), text: $("voicemail-text"), version: $("voicemail-version"),
  choices: $("voicemail-choices"), start: $("voicemail-start"), choiceLeft: $("voicemail-choice-left"),
  recording: $("voicemail-recording"), left: $("voicemail-left"), send: $("voicemail-send"),
  hangups: document.querySelectorAll(".voicemail-hangup"),
}, {
  onStart: (callSid) => socket.send({type: "voicemail.start", callSid}),
  onSend: (callSid) => socket.send({type: "voicemail.stop", callSid}),
  onHangup: () => hangUp(),
});
let call = null;         // {callSid, sessionId, mode, media, answeredAt, held, pending: []}
let incoming = null;     // callSid of a call ringing for us
let timerHandle = null;
let reconnectTimer = null;

function show(element, visible) {
  element.hidden = !visible;
}

function setState(state, text) {
  document.body.dataset.state = state;
  ui.status.textContent = text;
  const inCall = ["calling", "connecting", "connected", "reconnecting", "testing", "preflight"]
    .includes(state);
  const staged = state === "voicemail";  // the voicemail panel has its own buttons
  const hangupLabel = state === "preflight" ? gettext("Skip the check") :
    call?.mode === "echo" ? gettext("Stop the test") : gettext("Hang up");
  const ready = !inCall && state !== "incoming" && microphone.stream !== null;
  show(ui.call, !inCall && !staged && state !== "incoming" && state !== "mic-problem");
  show(ui.test, !inCall && !staged && state !== "incoming" && state !== "mic-problem");
  ui.call.disabled = ui.test.disabled = !ready || staged;
  show(ui.hangup, inCall);
  ui.hangup.textContent = hangupLabel;
  show(ui.incoming, state === "incoming");
  show(ui.retry, state === "mic-problem");
  show(ui.preflightRun, !inCall && !staged && state !== "incoming" && state !== "mic-problem");
  ui.preflightRun.disabled = !ready || staged;
  show(ui.mute, inCall && state !== "preflight");
  show(ui.timer, state === "connected" || state === "testing");
  // The branding's waiting text, while our call rings or waits in a queue.
  const waiting = $("waiting");
  show(waiting, state === "calling" && waiting.textContent.trim() !== "");
}

function setProblem(text) {
  ui.problem.textContent = text || "";
  show(ui.problem, Boolean(text));
}

async function ensureMicrophone() {
  const stream = await microphone.ensure();
  setProblem("");
  return stream;
}

// --- signaling -----------------------------------------------------------------------
const socket = new SignalSocket(config.signalPath, {
  onopen: () => socket.sendNow({type: "register", sessionId: "", authToken: config.token}),
  onmessage: handle,
  onstatus: (status) => {
    if (status === "reconnecting" && call) setState("reconnecting", gettext("Reconnecting…"));
  },
});

async function handle(message) {
  const data = message.data || {};
  if (message.type === "answer") return onAnswer(message);
  if (message.type === "error") return onError(message);
  if (message.type !== "event") return;
  switch (data.name) {
    case "registered": return onRegistered(data);
    case "call.ringing":
      if (call && call.callSid === message.callSid) setState("calling", gettext("Calling the operators…"));
      if (call && call.callSid === message.callSid) tellCall("ringing", {direction: "outbound"});
      return;
    case "call.incoming":
      if (call?.preflight && checking) {  // an operator calls: the check gives way
        checking.skipped = true;
        checking.stop();
        hangUp();
      }
      if (!call && !incoming) {
        incoming = message.callSid;
        ringer.start();
        setState("incoming", gettext("Incoming call…"));
        tellHost("ringing", {direction: "inbound", callSid: incoming});
      }
      return;
    case "queue.waiting": return onWaiting(message);
    case "queue.voicemail":
      if (call && call.mode === "bridge" && (!call.callSid || call.callSid === message.callSid)) {
        call.callSid = message.callSid;
        showPlace(null);
        voicemail.offer(message.callSid, data);
        show(ui.callback, data.callback === true);  // or a callback, until a message starts
        setState("voicemail", gettext("Nobody is free to take your call right now."));
      }
      return;
    case "call.held":
    case "call.resumed":
      if (call && call.callSid === message.callSid) showHeld(data.name === "call.held");
      return;
    case "call.transfer_started":
      // Our operator handed us on: we hear the hold audio until the next one answers.
      if (call && call.callSid === message.callSid) {
        showHeld(false);
        show(ui.transferring, true);
        ui.status.textContent = gettext("Transferring you…");
      }
      return;
    case "call.transfer_completed":
      if (call && call.callSid === message.callSid) show(ui.transferring, false);
      return;
    case "supervisor.joined":
    case "supervisor.mode_changed":
    case "supervisor.left":
      // Told only where the deployment tells end users (CALLBRIDGE_TELL_USER_SUPERVISOR).
      if (call && call.callSid === message.callSid) showSupervisor(data);
      return;
    case "call.answered":
      if (call && call.callSid === message.callSid) {
        show(ui.transferring, false);
        call.answeredAt = call.answeredAt || Date.now();  // a transfer's answer: same call
        showPlace(null);
        show(ui.callback, false);
        if (call.media?.pc.connectionState === "connected") connected();
        else setState("connecting", gettext("Connecting…"));
      }
      return;
    case "media.connected":
    case "media.disconnected":
      return onMediaEvent(message);
    case "quality.warning":
    case "quality.cleared":
      return onQualityEvent(message);
    case "consent.requested":
      if (call && call.callSid === message.callSid && (data.missing || []).includes("user")) {
        show(ui.consent, true);
      }
      return;
    case "recording.started":
    case "recording.stopped":
      if (call && call.callSid === message.callSid && voicemail.open) {
        if (data.name === "recording.started") {
          voicemail.recording(data);
          show(ui.callback, false);
        }
        return;  // our message: the panel shows it (no "Stop recording me": Hang up/Send)
      }
      if (call && call.callSid === message.callSid) {
        const on = data.name === "recording.started";
        show(ui.recording, on);
        show(ui.withdraw, on);
      }
      return;
    case "call.ended":
      if (incoming === message.callSid) {
        ringer.stop();
        incoming = null;
        setState("ended", gettext("You missed a call."));
        tellHost("ended", {callSid: message.callSid, reason: data.reason});
      }
      if (call && call.callSid === message.callSid) finish(data.reason);
      return;
  }
}

// The caller's place in a queue's line (queues other than the default one say it). It may
// come before our offer's answer names the call: a call of ours still without a callSid.
function onWaiting(message) {
  if (!call || call.mode !== "bridge" || call.answeredAt) return;
  if (call.callSid && call.callSid !== message.callSid) return;
  // In one queue a place only goes down (newcomers join at the end); two changes at once
  // may be told out of order, so a larger number there is an older message.
  const shown = call.place;
  const data = message.data;
  if (shown && data.position && shown.queue === data.queue && data.position > shown.position) return;
  call.place = data;
  showPlace(data);
  show(ui.callback, data.callback === true);  // this queue offers callbacks
}

// "Call me back": the call ends (`callback_requested`), this page stays registered and
// rings when an operator calls back (call.incoming, as for any operator's call).
function askForCallback() {
  if (!call?.callSid || call.answeredAt) return;
  ui.callbackAsk.disabled = true;
  socket.send({type: "callback.request", callSid: call.callSid, note: ui.callbackNote.value});
}

function showPlace(waiting) {
  // position null: moved to a queue that tells no place (the default one).
  const place = waiting?.position ? waiting : null;
  ui.place.textContent = place
    ? interpolate(gettext("Waiting — you are number %(position)s in line for %(queue)s."),
                  {position: place.position, queue: place.queueName}, true) : "";
  show(ui.place, Boolean(place));
}

// On hold: the operator hears nothing of us and we hear the hold audio, until resumed.
function showHeld(held) {
  if (call) call.held = held;
  show(ui.held, Boolean(call?.held));
  if (call?.answeredAt && document.body.dataset.state === "connected") {
    ui.status.textContent = call.held ? gettext("On hold.") : gettext("Connected.");
  }
}

// A supervisor on the call: whether they can hear us, and whether we hear them.
const SUPERVISOR_TEXT = {
  monitor: gettext("A supervisor joined the call and is listening."),
  whisper: gettext("A supervisor joined the call and is listening (they speak to the operator only)."),
  barge: gettext("A supervisor joined the conversation: you can hear each other."),
};

function showSupervisor(data) {
  const mode = data.name === "supervisor.left" ? null : data.supervisorMode;
  ui.supervisor.textContent = mode ? SUPERVISOR_TEXT[mode] || "" : "";
  show(ui.supervisor, Boolean(mode));
}

function onRegistered(data) {
  const open = (data.calls || []).find((c) => c.sessionId);
  const mineNow = call && (data.calls || []).find((c) => c.callSid === call.callSid);
  if (mineNow) showHeld(Boolean(mineNow.held));
  if (mineNow) showSupervisor({name: "registered", supervisorMode: mineNow.supervisorMode});
  if (call) {
    // The socket came back: media usually survived; if not, reconnect it.
    if (call.media?.pc.connectionState !== "connected") reconnectMedia();
    else if (call.answeredAt) connected();
    return;
  }
  if (open) {
    // The page was reloaded during a call: take our place in it again.
    call = {callSid: open.callSid, sessionId: open.sessionId, mode: open.mode, pending: [],
            answeredAt: open.state === "active" ? Date.now() : null, held: Boolean(open.held)};
    showHeld(call.held);
    reconnectMedia();
  } else if (!incoming) {
    setState(microphone.stream ? "idle" : document.body.dataset.state || "idle",
             microphone.stream ? gettext("Ready.") : ui.status.textContent);
  }
  registeredOnce = true;
  maybePreflightBeforeCalling();
}

async function onAnswer(message) {
  if (!call || call.sessionId && call.sessionId !== message.sessionId) return;
  call.callSid = message.callSid;
  call.sessionId = message.sessionId;
  // Our own call is ringing once the server took the offer (call.ringing says so too).
  if (call.outbound && !call.answeredAt) tellCall("ringing", {direction: "outbound"});
  await call.media.accept(message.data.sdp);
  for (const candidate of call.pending.splice(0)) sendCandidate(candidate);
}

function onError(message) {
  const error = message.data;
  if (voicemail.open) voicemail.refused();
  if (error.code === "MEDIA_BRIDGE_FAILURE" && call) {
    reconnectMedia();
    return;
  }
  setProblem(error.message);
  if (!call?.preflight) {  // the preflight reports its own failures
    tellHost("error", {code: error.code, message: error.message, callSid: message.callSid || null});
  }
  ui.callbackAsk.disabled = false;  // a refused callback request may be asked again
  if (call && !call.sessionId) {  // our offer was refused: there is no call
    closeMedia();
    call = null;
    setState("idle", gettext("Ready."));
  }
}

function onMediaEvent(message) {
  if (!call || call.callSid !== message.callSid) return;
  const mine = message.data.legID === call.sessionId;
  if (mine && ["closed", "failed"].includes(message.data.media)) {
    // The server lost our media (a network blip, a closed leg): offer again, same call.
    reconnectMedia();
    return;
  }
  if (!mine && call.mode === "bridge") {
    ui.note.textContent = message.data.name === "media.disconnected"
      ? gettext("The operator's connection dropped; waiting for them to come back…") : "";
  }
}

// The server's estimate of our own leg's network (only our leg's reach this socket).
const POOR_CONNECTION = gettext(
  "Your connection is poor: you may be hard to hear. A wired connection or a stronger signal helps.");

function onQualityEvent(message) {
  if (!call || call.callSid !== message.callSid || message.data.legID !== call.sessionId) return;
  if (message.data.name === "quality.warning") ui.note.textContent = POOR_CONNECTION;
  else if (ui.note.textContent === POOR_CONNECTION) ui.note.textContent = "";
}

// --- calls -----------------------------------------------------------------------------
// The host page (when framed) hears of real calls only, each event once: not of echo tests.
function tellCall(type, detail = {}) {
  if (!call || call.mode !== "bridge" || call.told?.includes(type)) return;
  call.told = [...(call.told || []), type];
  tellHost(type, {callSid: call.callSid || null, ...detail});
}

async function startCall(mode, callSid = null, extra = {}) {
  setProblem("");
  const stream = await ensureMicrophone();
  call = {callSid, sessionId: "", mode, pending: [], answeredAt: mode === "echo" ? Date.now() : null,
          outbound: !callSid, ...extra};
  await connectMedia(stream);
  // An echo test or an accepted call shows "Connecting…" until the media connects.
  if (mode === "bridge" && !callSid) setState("calling", gettext("Calling the operators…"));
  else setState("connecting", gettext("Connecting…"));
}

async function connectMedia(stream) {
  const media = new CallMedia({
    iceServers: config.iceServers,
    audioElement: ui.remote,
    onCandidate: (candidate) => {
      if (media !== call?.media) return;
      if (call.sessionId) sendCandidate(candidate);
      else call.pending.push(candidate);
    },
    onState: (state) => onMediaState(media, state),
  });
  media.setMuted(ui.mute.getAttribute("aria-pressed") === "true");
  call.media = media;
  const sdp = await media.offer(stream);
  const offer = {type: "offer", sessionId: "", authToken: config.token,
                 data: {type: "offer", sdp}};
  if (call.callSid) offer.callSid = call.callSid;
  else offer.mode = call.mode;
  // A link may name the queue to call (`&queue=`); the server says if it does not exist.
  if (!call.callSid && call.mode === "bridge" && config.queue) offer.queue = config.queue;
  socket.send(offer);
}

function sendCandidate(candidate) {
  socket.send({type: "ice-candidate", sessionId: call.sessionId, data: {
    candidate: candidate ? candidate.candidate : "",
    sdpMid: candidate?.sdpMid ?? "0",
    sdpMLineIndex: candidate?.sdpMLineIndex ?? 0,
  }});
}

function onMediaState(media, state) {
  if (!call || media !== call.media) return;
  if (state === "connected") {
    clearTimeout(reconnectTimer);
    if (call.answeredAt) connected();
  } else if (state === "failed") {
    reconnectMedia();
  } else if (state === "disconnected") {
    setState("reconnecting", gettext("Reconnecting…"));
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(() => {
      if (call?.media === media && media.pc.connectionState !== "connected") reconnectMedia();
    }, 3000);
  }
}

async function reconnectMedia() {
  if (!call || !call.callSid) return;
  setState("reconnecting", gettext("Reconnecting…"));
  closeMedia();
  call.sessionId = "";  // the answer names our (same) leg again
  try {
    await connectMedia(await ensureMicrophone());
  } catch (error) {
    console.error(error);
  }
}

function connected() {
  if (call.preflight) {  // the preflight's echo: measured by runPreflight, no timer
    call.preflight.connected();
    return;
  }
  const testing = call.mode === "echo";
  tellCall("connected");
  setState(testing ? "testing" : "connected",
           testing ? gettext("Testing your microphone: you should hear yourself.") :
             call.held ? gettext("On hold.") : gettext("Connected."));
  ui.note.textContent = "";
  clearInterval(timerHandle);
  const start = call.answeredAt || Date.now();
  const tick = () => { ui.timer.textContent = formatDuration((Date.now() - start) / 1000); };
  tick();
  timerHandle = setInterval(tick, 1000);
}

function closeMedia() {
  call?.media?.close();
  if (call) call.media = null;
}

async function answerConsent(granted) {
  if (!call?.callSid) return;
  const response = await fetch(`/api/calls/${call.callSid}/consent`, {
    method: "POST",
    headers: {"Content-Type": "application/json", Authorization: `Bearer ${config.token}`},
    body: JSON.stringify({granted, policy: config.consentVersion, via: "page"}),
  });
  if (!response.ok) {
    const error = await response.json().catch(() => ({}));
    setProblem(error.message || gettext("Your answer could not be saved."));
    return;
  }
  show(ui.consent, false);
  ui.note.textContent = granted ? gettext("Thank you: you agreed to be recorded.") :
    gettext("You said no: this call will not be recorded.");
}

function finish(reason) {
  tellCall("ended", {reason: reason || "hangup"});
  voicemail.close();
  show(ui.consent, false);
  show(ui.held, false);
  show(ui.transferring, false);
  show(ui.recording, false);
  show(ui.withdraw, false);
  const testing = call?.mode === "echo";
  const wasPreflight = Boolean(call?.preflight);
  closeMedia();
  call = null;
  clearInterval(timerHandle);
  clearTimeout(reconnectTimer);
  ui.note.textContent = "";
  showPlace(null);
  show(ui.callback, false);
  ui.callbackAsk.disabled = false;
  ui.callbackNote.value = "";
  if (wasPreflight) return;  // runPreflight says what comes next
  setState("ended", testing ? gettext("Microphone test finished.") : END_REASONS[reason] || gettext("The call has ended."));
}

// --- preflight ---------------------------------------------------------------------------
// Before the first call (config.preflight "before_call") and on demand ("Check my
// connection"): the microphone's level, an echo call through the server measured for a
// few seconds (you do not hear it), TURN if configured; the server judges and keeps it.
let preflightDone = false;
let registeredOnce = false;
let checking = null;  // the preflight running now: {skipped, stop()}

async function runPreflight(trigger) {
  if (call || incoming || checking) return;
  const run = checking = {skipped: false, stop: () => {}};
  try {
    await preflight(trigger, run);
  } finally {
    checking = null;
  }
}

async function preflight(trigger, run) {
  setProblem("");
  ui.preflight.hidden = true;
  setState("preflight", gettext("Checking your microphone and connection…"));
  const turn = turnCheck(config.iceServers);
  const report = {trigger, microphone: {ok: false}, echo: {ok: false, packetsReceived: 0,
                  packetsLost: 0, problem: "not tried"}, turn: {configured: false}};
  try {
    await ensureMicrophone();
    report.microphone = {ok: true, level: await microphoneLevel(microphone.meter)};
  } catch (error) {
    report.microphone = {ok: false, level: 0, problem: String(error.message).slice(0, 200)};
  }
  if (call || incoming) run.skipped = true;  // a call came first: the check gives way
  if (report.microphone.ok && !run.skipped) report.echo = await echoCheck(run);
  report.turn = await turn;
  if (run.skipped) {  // "Skip the check": nothing to report
    if (!call && !incoming) setState("idle", gettext("Ready."));
    return;
  }
  let result;
  try {
    result = await fileReport(config.token, report);
  } catch (error) {
    result = {verdict: report.microphone.ok && report.echo.ok ? "good" : "problem",
              findings: [error.message]};
  }
  preflightDone = true;
  if (call || incoming) return;  // a call came in meanwhile: leave its state alone
  showResult(ui.preflight, result);
  setState(microphone.stream ? "idle" : "mic-problem", microphone.stream ? gettext("Ready.") :
    gettext("Your microphone is not available."));
}

async function echoCheck(run) {
  ui.remote.muted = true;  // measured, not heard
  let connectedNow;
  const connectedSoon = new Promise((resolve) => { connectedNow = resolve; });
  run.stop = () => connectedNow(false);
  try {
    await startCall("echo", null, {preflight: {connected: () => connectedNow(true)}});
    setState("preflight", gettext("Checking your connection…"));
    const up = await Promise.race([connectedSoon, new Promise((r) => setTimeout(() => r(false), 10000))]);
    if (!up || !call?.media) {
      return {ok: false, packetsReceived: 0, packetsLost: 0,
              problem: "the connection to the service did not open"};
    }
    return await echoStats(call.media.pc);
  } catch (error) {
    return {ok: false, packetsReceived: 0, packetsLost: 0, problem: String(error).slice(0, 200)};
  } finally {
    if (call?.preflight) hangUp();
    ui.remote.muted = false;
  }
}

let microphoneFailed = false;  // on opening the page: worth a report for support too

function maybePreflightBeforeCalling() {
  if (config.preflight !== "before_call" || preflightDone || !registeredOnce) return;
  if (call || incoming || !(microphone.stream || microphoneFailed)) return;
  preflightDone = true;
  runPreflight("before_call").catch(console.error);
}

// --- buttons ---------------------------------------------------------------------------
ui.call.addEventListener("click", () => startCall("bridge").catch(console.error));
ui.test.addEventListener("click", () => startCall("echo").catch(console.error));
function hangUp() {
  if (!call) return;
  if (call.sessionId) socket.send({type: "hangup", sessionId: call.sessionId});
  else if (call.callSid) socket.send({type: "hangup", callSid: call.callSid});
  // Mid-message, hanging up sends it: the server's call.ended says so (reason voicemail).
  if (voicemail.open && !voicemail.ui.recording.hidden) return;
  finish("hangup");
}

ui.hangup.addEventListener("click", () => {
  if (checking) {  // "Skip the check"
    checking.skipped = true;
    checking.stop();
  }
  hangUp();
});
ui.preflightRun.addEventListener("click", () => runPreflight("on_demand").catch(console.error));
ui.accept.addEventListener("click", () => {
  ringer.stop();
  const callSid = incoming;
  incoming = null;
  startCall("bridge", callSid).catch(console.error);
});
ui.decline.addEventListener("click", () => {
  ringer.stop();
  socket.send({type: "hangup", callSid: incoming});
  tellHost("ended", {callSid: incoming, reason: "rejected"});
  incoming = null;
  setState("idle", gettext("Ready."));
});
ui.callbackAsk.addEventListener("click", askForCallback);
ui.consentYes.addEventListener("click", () => answerConsent(true).catch(console.error));
ui.consentNo.addEventListener("click", () => answerConsent(false).catch(console.error));
ui.withdraw.addEventListener("click", () => answerConsent(false).catch(console.error));
ui.mute.addEventListener("click", () => {
  const muted = ui.mute.getAttribute("aria-pressed") !== "true";
  ui.mute.setAttribute("aria-pressed", String(muted));
  ui.mute.textContent = muted ? gettext("Unmute") : gettext("Mute");
  call?.media?.setMuted(muted);
});
ui.retry.addEventListener("click", async () => {
  try {
    await ensureMicrophone();
    setState("idle", gettext("Ready."));
  } catch (error) { /* the message is on the page */ }
});
ui.microphone.addEventListener("change", () =>
  microphone.change(async (stream) => call?.media?.useMicrophone(stream)));

setState("checking", gettext("Checking your microphone…"));
ensureMicrophone()
  .then(() => {
    if (!call && !incoming) setState("idle", gettext("Ready."));
    maybePreflightBeforeCalling();
  })
  .catch(() => {
    microphoneFailed = true;
    maybePreflightBeforeCalling();
  });
