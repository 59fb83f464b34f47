// Notes and disposition for one of my calls: while I talk and in its wrap-up (GET/PUT
// /api/calls/{id}/disposition). The server decides who may write until when; this box
// says what it answered: saved (with the revision's time) or not saved (and why), and
// never drops what the operator typed when a save fails.

const CLOCK = {hour: "2-digit", minute: "2-digit"};
const clock = (iso) => new Date(iso).toLocaleTimeString([], CLOCK);

export class WrapUp {
  constructor({api, notesMaxChars, supervisor = false, onClose}) {
    const $ = (id) => document.getElementById(id);
    this.ui = {
      root: $("wrapup"), title: $("wrapup-for"), code: $("wrapup-code"), notes: $("wrapup-notes"),
      count: $("wrapup-count"), save: $("wrapup-save"), close: $("wrapup-close"),
      state: $("wrapup-state"),
    };
    this.api = api;
    this.supervisor = supervisor;  // may change any call's, any time: no deadline to show
    this.onClose = onClose || (() => {});
    this.callID = null;
    this.saved = {code: "", notes: ""};  // what the server holds
    this.codes = [];  // GET /api/dispositions, on every open
    this.ui.notes.maxLength = notesMaxChars;
    this.ui.notes.addEventListener("input", () => this.renderDirty());
    this.ui.code.addEventListener("change", () => this.renderDirty());
    this.ui.notes.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) this.save();
    });
    this.ui.save.addEventListener("click", () => this.save());
    this.ui.close.addEventListener("click", () => this.close());
  }

  get dirty() {
    return this.ui.code.value !== this.saved.code || this.ui.notes.value !== this.saved.notes;
  }

  // Show the box for `call` (a feed summary); loads what is saved. Keeps unsaved typing
  // when it is the call already shown (a reconnect, the call ending).
  async open(call, {ended = false} = {}) {
    const same = this.callID === call.callID;
    this.callID = call.callID;
    this.call = call;
    this.ui.root.hidden = false;
    this.ui.title.textContent = interpolate(
      ended ? gettext("%(name)s's call — wrap-up") : gettext("%(name)s's call"),
      {name: call.displayName || gettext("the end user")}, true);
    if (!same) {
      this.ui.notes.value = "";
      this.ui.code.value = "";
      this.setState(gettext("Loading…"));
    }
    try {
      this.codes = await this.api("GET", "/dispositions");  // admin may have added some
      const body = await this.api("GET", `/calls/${call.callID}/disposition`);
      if (this.callID !== call.callID) return;
      const keepTyping = same && this.dirty;
      const typed = {code: this.ui.code.value, notes: this.ui.notes.value};
      this.fill(body);
      if (keepTyping) {
        this.ui.code.value = typed.code;
        this.ui.notes.value = typed.notes;
      }
      this.renderDirty();
    } catch (error) {
      this.setState(interpolate(gettext("Could not load the notes: %(reason)s"), {reason: error.message}, true), "failed");
    }
  }

  // The call ended: its box stays for the wrap-up (the server says until when).
  ended(call) {
    if (this.callID === call.callID) this.open(call, {ended: true});
  }

  close() {
    if (this.dirty && !window.confirm(gettext("Discard the notes you have not saved?"))) return;
    this.callID = null;
    this.ui.root.hidden = true;
    this.onClose();
  }

  fill(body) {
    const queue = this.call.queue;
    const pickable = this.codes.filter((c) => c.queues.length === 0 || c.queues.includes(queue));
    const options = pickable.map((c) => new Option(c.label, c.code));
    // A retired code stays on the call that has it: shown, keepable, not offered again.
    if (body.disposition && !pickable.some((c) => c.code === body.disposition.code)) {
      options.push(new Option(`${body.disposition.label} (retired)`, body.disposition.code));
    }
    this.ui.code.replaceChildren(new Option(gettext("— no disposition —"), ""), ...options);
    this.saved = {code: body.disposition?.code || "", notes: body.notes};
    this.ui.code.value = this.saved.code;
    this.ui.notes.value = body.notes;
    this.editableUntil = body.editableUntil;
    this.revision = body.revision;  // sent back with a save: nobody's edit is lost unseen
    this.lastSaved = body.revision ? body.updatedAt : null;
  }

  renderDirty() {
    const left = this.ui.notes.maxLength - this.ui.notes.value.length;
    this.ui.count.textContent = interpolate(gettext("%(count)s characters left"), {count: left}, true);
    const until = this.editableUntil && !this.supervisor
      ? ` ${interpolate(gettext("You can change them until %(time)s."), {time: clock(this.editableUntil)}, true)}` : "";
    if (this.dirty) {
      this.setState(`${gettext("Not saved yet.")}${until}`, "dirty");
    } else if (this.lastSaved) {
      this.setState(`${interpolate(gettext("Saved at %(time)s."), {time: clock(this.lastSaved)}, true)}${until}`, "saved");
    } else {
      this.setState(`${gettext("Nothing saved yet.")}${until}`);
    }
  }

  // Someone (a supervisor) saved since this box loaded: learn their revision, keep what
  // was typed here, and let the operator decide (Save again replaces theirs).
  async behindBy(callID) {
    const typed = {code: this.ui.code.value, notes: this.ui.notes.value};
    try {
      const latest = await this.api("GET", `/calls/${callID}/disposition`);
      if (this.callID !== callID) return;
      this.fill(latest);
      this.ui.code.value = typed.code;
      this.ui.notes.value = typed.notes;
      this.setState(interpolate(gettext("Not saved: %(operator)s changed them meanwhile. Yours are still here: Save notes again to replace theirs."),
                                {operator: latest.updatedBy}, true), "failed");
    } catch (error) {
      this.setState(interpolate(gettext("Not saved: %(reason)s"), {reason: error.message}, true), "failed");
    }
  }

  setState(text, kind = "") {
    this.ui.state.textContent = text;
    this.ui.state.dataset.state = kind;
  }

  async save() {
    if (!this.callID) return;
    const callID = this.callID;
    const body = {code: this.ui.code.value || null, notes: this.ui.notes.value,
                  revision: this.revision};
    this.ui.save.disabled = true;
    this.setState(gettext("Saving…"), "saving");
    try {
      const saved = await this.api("PUT", `/calls/${callID}/disposition`, body);
      if (this.callID !== callID) return;
      const typedSince = this.ui.notes.value !== body.notes || this.ui.code.value !== (body.code || "");
      const typed = {code: this.ui.code.value, notes: this.ui.notes.value};
      this.fill(saved);
      if (typedSince) {  // typed on while it saved: keep that, unsaved
        this.ui.code.value = typed.code;
        this.ui.notes.value = typed.notes;
      }
      this.renderDirty();
    } catch (error) {
      // What was typed stays in the box: the operator can copy it, or retry.
      if (error.code === "CALL_STATE" && this.callID === callID) {
        await this.behindBy(callID);
      } else {
        this.setState(interpolate(gettext("Not saved: %(reason)s"), {reason: error.message}, true), "failed");
      }
    } finally {
      this.ui.save.disabled = false;
    }
  }
}
