// The official @microsoft/signalr client (Node build) against a running callbridge's
// WebRtcHub: invocations with and without completions, failed ones, a refused credential.
// Usage: node hub_wire_check.cjs BASE_URL SESSION_TOKEN. Prints one JSON object of results.
"use strict";
const signalR = require("@microsoft/signalr");

async function outcome(promise) {
  try {
    return { ok: true, value: (await promise) ?? null };
  } catch (error) {
    return { ok: false, error: String(error && error.message) };
  }
}

async function main() {
  const [base, sessionToken] = process.argv.slice(2);
  const results = {};
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/hubs/webrtc?sessionToken=${sessionToken}`)
    .configureLogging(signalR.LogLevel.None)
    .build();
  const errors = [];
  connection.on("Error", (err) => errors.push(err));
  results.start = await outcome(connection.start());
  results.transport = connection.connectionId ? "connected" : "none";
  results.unknown = await outcome(connection.invoke("NoSuchMethod", 1));
  results.badOffer = await outcome(connection.invoke("SendOfferAsync", { sdp: "x", type: "offer" }));
  results.sent = await outcome(
    connection.send("SendIceCandidateAsync", { candidate: "", sdpMid: "0", sdpMLineIndex: 0 }),
  );
  results.badSend = await outcome(connection.send("EndSessionAsync", 42));
  results.end = await outcome(connection.invoke("EndSessionAsync", "user_ended"));
  await new Promise((resolve) => setTimeout(resolve, 300)); // the Error event of badSend
  results.errors = errors;
  results.stop = await outcome(connection.stop());

  const refused = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/hubs/webrtc?sessionToken=cbs_forgedforgedforgedforgedforged`)
    .configureLogging(signalR.LogLevel.None)
    .build();
  results.refused = await outcome(refused.start());
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ crashed: String(error) }));
  process.exit(1);
});
