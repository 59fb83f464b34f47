// The dashboard's line under a ringing caller: what their page's preflight found
// (GET /api/calls/{id}/preflight: the latest report of the caller's session). Fetched once
// per call and kept, since the ringing list is redrawn on every feed event.

const VERDICTS = {good: gettext("preflight ok"), warning: gettext("preflight: warnings"), problem: gettext("preflight: problem")};

export class PreflightLines {
  constructor() {
    this.reports = new Map();  // callID → report | null (none) | "loading"
  }

  // Adds the line to a ringing call's <li> (now, or once the report arrives).
  attach(li, call) {
    if (call.direction !== "inbound" || !call.sessionId) return;
    const known = this.reports.get(call.callID);
    if (known === undefined) this.load(call.callID);
    else if (known && known !== "loading") li.append(line(known));
  }

  async load(callID) {
    this.reports.set(callID, "loading");
    const response = await fetch(`/api/calls/${callID}/preflight`, {credentials: "same-origin"})
      .catch(() => null);
    const report = response?.ok ? await response.json().catch(() => null) : null;
    this.reports.set(callID, report);
    const li = document.querySelector(`#ringing li[data-call-id="${callID}"]`);
    if (report && li && !li.querySelector(".preflight")) li.append(line(report));
  }
}

function line(report) {
  const element = document.createElement("p");
  element.className = `preflight ${report.verdict}`;
  const echo = report.report.echo || {};
  const numbers = [
    echo.rttMs != null ? interpolate(gettext("RTT %s ms"), [Math.round(echo.rttMs)]) : "",
    echo.jitterMs != null ? interpolate(gettext("jitter %s ms"), [Math.round(echo.jitterMs)]) : "",
    echo.lossPercent != null ? interpolate(gettext("loss %s"), [`${echo.lossPercent.toFixed(1)}%`]) : "",
  ].filter(Boolean).join(" · ");
  const verdict = document.createElement("strong");
  verdict.textContent = VERDICTS[report.verdict] || report.verdict;
  element.append(verdict, ` ${numbers}${numbers ? " — " : ""}${report.findings.join(" ")}`);
  element.title = interpolate(gettext("Checked %s"), [new Date(report.createdAt).toLocaleTimeString()]);
  return element;
}
