// The end-user page's preflight checks: the microphone's level, the echo call's round trip
// through the server (RTT, loss, jitter from getStats), TURN reachability; the report is
// filed with the session (POST /api/sessions/me/preflight), which judges it in plain
// language for the page, the operators (dashboard) and support (admin).

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The loudest the microphone's meter read over `ms` (its level is 0..1).
export async function microphoneLevel(meter, ms = 1500) {
  let loudest = 0;
  for (let waited = 0; waited < ms; waited += 100) {
    await sleep(100);
    loudest = Math.max(loudest, meter.level || 0);
  }
  return Math.round(loudest * 1000) / 1000;
}

async function snapshot(pc) {
  const stats = await pc.getStats();
  let inbound = null, pair = null, remote = null, selectedPair = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") inbound = s;
    if (s.type === "remote-inbound-rtp" && s.kind === "audio") remote = s;
    if (s.type === "transport" && s.selectedCandidatePairId) selectedPair = s.selectedCandidatePairId;
    if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated) pair = s;
  });
  if (selectedPair && stats.get(selectedPair)) pair = stats.get(selectedPair);
  return {
    received: inbound?.packetsReceived ?? 0,
    lost: Math.max(0, inbound?.packetsLost ?? 0),
    jitterS: inbound?.jitter ?? null,
    rttS: pair?.currentRoundTripTime ?? remote?.roundTripTime ?? null,
  };
}

// What the echo call's media did over `ms`: packets back from the server, lost, jitter, RTT.
export async function echoStats(pc, ms = 3000) {
  const first = await snapshot(pc);
  await sleep(ms);
  const last = await snapshot(pc);
  const received = last.received - first.received;
  const lost = Math.max(0, last.lost - first.lost);
  const round = (value, digits = 1) => value === null ? null :
    Math.round(value * 10 ** digits) / 10 ** digits;
  return {
    ok: received > 0,
    rttMs: last.rttS === null ? null : round(last.rttS * 1000),
    jitterMs: last.jitterS === null ? null : round(last.jitterS * 1000),
    lossPercent: received + lost > 0 ? round((100 * lost) / (received + lost), 2) : null,
    packetsReceived: received,
    packetsLost: lost,
    ...(received > 0 ? {} : {problem: "no sound came back from the service"}),
  };
}

// Whether a relay candidate comes from the configured TURN servers (none: not configured).
export async function turnCheck(iceServers, ms = 5000) {
  const isTurn = (url) => /^turns?:/.test(url);
  const turn = (iceServers || []).filter((s) => [].concat(s.urls).some(isTurn));
  if (!turn.length) return {configured: false, reachable: null};
  const pc = new RTCPeerConnection({iceServers: turn, iceTransportPolicy: "relay"});
  try {
    pc.createDataChannel("preflight");
    const found = new Promise((resolve) => {
      pc.onicecandidate = (event) => {
        if (!event.candidate) resolve(false);
        else if (/ typ relay /.test(event.candidate.candidate)) resolve(true);
      };
      setTimeout(() => resolve(false), ms);
    });
    await pc.setLocalDescription(await pc.createOffer());
    const reachable = await found;
    return {configured: true, reachable,
            ...(reachable ? {} : {problem: "no relay address from the TURN server"})};
  } finally {
    pc.close();
  }
}

export async function fileReport(token, report) {
  const response = await fetch("/api/sessions/me/preflight", {
    method: "POST",
    headers: {"Content-Type": "application/json", Authorization: `Bearer ${token}`,
              // The findings come back in the page's language (?lang= included).
              "Accept-Language": document.documentElement.lang},
    body: JSON.stringify(report),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || gettext("The report could not be saved."));
  return body;
}

const HEADINGS = {
  good: gettext("Your microphone and connection work."),
  warning: gettext("A call should work, but:"),
  problem: gettext("A call would not work:"),
};

// The plain-language result (the server's findings; ours if it could not be reached).
export function showResult(section, {verdict, findings}) {
  section.querySelector("h2").textContent = HEADINGS[verdict] || "";
  section.dataset.verdict = verdict;
  const list = section.querySelector("ul");
  list.replaceChildren(...findings.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  section.hidden = false;
}
