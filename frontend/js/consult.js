// Attended transfer on the dashboard (the server checks every step anyway).
// - The call's operator: "Consult" next to Transfer (the same target list): the caller is
//   held, the chosen operator rings; then "Complete transfer" (they take the caller, I
//   leave) or "Cancel consult" (back to the caller).
// - The consulted operator: the consult rings in Ringing (Answer sends my media offer,
//   which answers it; Decline passes); once answered I talk to the first operator, the
//   caller on hold, and Hang up cancels the consult; completed, the call is mine.
export class ConsultControls {
  constructor({api, me, ui, announce, problem}) {
    this.api = api;
    this.me = me;
    this.ui = ui;  // {transfer, hold, consulting, complete, hideForTarget: [elements]}
    this.announce = announce;
    this.problem = problem;
  }

  // Mine to complete or cancel: my call (I am its operator) with a consult under way.
  isMine(call) {
    return Boolean(call?.consult && call.operator === this.me && call.consult.operator !== this.me);
  }

  // I am the one consulted (ringing or answered).
  isTarget(call) {
    return Boolean(call?.consult && call.consult.operator === this.me);
  }

  // A consult ringing for me: shown in Ringing with Answer / Decline.
  ringsForMe(call) {
    return call.state === "active" && this.isTarget(call) && !call.consult.answered;
  }

  // The "Your audio" line while a consult is under way (null: not in one).
  status(call, who, operatorName) {
    if (this.isMine(call)) {
      const them = operatorName(call.consult.operator);
      return call.consult.answered
        ? interpolate(gettext("Consulting %(operator)s: you hear each other; %(name)s is on hold and hears neither of you."), {operator: them, name: who}, true)
        : interpolate(gettext("Calling %(operator)s to consult; %(name)s is on hold."), {operator: them, name: who}, true);
    }
    if (this.isTarget(call) && call.consult.answered) {
      const by = call.consult.by.replace(/^operator /, "");
      return interpolate(gettext("%(operator)s is consulting you about %(name)s, who is on hold and does not hear you."),
                         {operator: operatorName(by), name: who}, true);
    }
    return null;
  }

  // What my own call shows: Consult (with Transfer), or Complete / Cancel during a consult;
  // the consulted operator gets none of the call's controls.
  render(call, inCall) {
    const mine = inCall && this.isMine(call);
    const target = inCall && this.isTarget(call);
    this.ui.consulting.hidden = !mine;
    this.ui.complete.disabled = !(mine && call.consult.answered);
    if (mine || target) {
      // The consult holds the caller until it is completed or cancelled: no Resume.
      this.ui.transfer.hidden = this.ui.hold.hidden = true;
      if (target) for (const element of this.ui.hideForTarget) element.hidden = true;
    }
  }

  // A feed event about `callID`, my call `mineID` (null: none): true if my part in it
  // ended (the dashboard closes my media then).
  endsMine(data, callID, mineID) {
    if (callID !== mineID) return false;
    if (data.name === "call.consult_completed" && data.call?.operator !== this.me) {
      this.announce(data.toOperator
        ? interpolate(gettext("%(operator)s took the call."), {operator: data.toOperator}, true)
        : gettext("They took the call."));
      return true;
    }
    if (data.name === "call.consult_cancelled" && data.toOperator === this.me) {
      this.announce(gettext("The consult ended."));
      return true;
    }
    if (data.name === "call.consult_completed" && data.call?.operator === this.me) {
      this.announce(gettext("The call is yours now."));
    }
    if (data.name === "call.consult_cancelled") this.announce(gettext("The consult ended: back to the caller."));
    return false;
  }

  async start(callID, to) {
    this.problem("");
    return this.api("POST", `/calls/${callID}/consult`, {to});
  }

  async complete(callID) {
    this.problem("");
    return this.api("POST", `/calls/${callID}/consult/complete`);
  }

  async cancel(callID) {
    this.problem("");
    return this.api("POST", `/calls/${callID}/consult/cancel`);
  }
}
