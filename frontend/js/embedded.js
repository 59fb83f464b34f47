// The end-user page framed by an integrator's site (/talk/embed/, docs/embedding.md): it
// says `ready` to the host page, takes the session token the host posts back (only from a
// configured origin, only from its parent), trades it for the page's configuration, and
// tells the host what happens: ready, ringing, connected, ended (with the reason), error.
// Messages go to the host's exact origin, never "*". Outside a frame this does nothing.

let embedded = false;
let origins = [];
let hostOrigin = null;   // the configured origin the token came from

function parentOrigins() {
  // Chromium and Safari say who frames us: post only there. Elsewhere post to each
  // configured origin: the browser delivers only the one that matches the parent.
  const ancestor = window.location.ancestorOrigins?.[0];
  if (ancestor) return origins.includes(ancestor) ? [ancestor] : [];
  return origins;
}

export function tellHost(type, detail = {}) {
  if (!embedded || window.parent === window) return;
  const message = {source: "callbridge", type, ...detail};
  for (const origin of hostOrigin ? [hostOrigin] : parentOrigins()) {
    window.parent.postMessage(message, origin);
  }
}

function tokenFromHost() {
  return new Promise((resolve) => {
    window.addEventListener("message", function listen(event) {
      if (event.source !== window.parent || !origins.includes(event.origin)) return;
      const data = event.data;
      if (!data || data.type !== "callbridge.session" || typeof data.token !== "string") return;
      window.removeEventListener("message", listen);
      hostOrigin = event.origin;
      resolve(data.token);
    });
  });
}

export class EmbedProblem extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// The page's configuration: inline on /talk/?token=…, from the host's token when framed.
export async function pageConfig(inline) {
  if (!inline.embed) return inline;
  embedded = true;
  origins = inline.embedOrigins || [];
  if (window.parent === window) {
    throw new EmbedProblem("FORBIDDEN", gettext("This page works inside the website that offers the call."));
  }
  const token = tokenFromHost();
  tellHost("ready");
  const response = await fetch(inline.sessionPath, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: await token}),
    credentials: "omit",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new EmbedProblem(body.code || "HANDLER_ERROR", body.message || gettext("The call could not start."));
  }
  return {...body, ...inline};  // the page's own (queue, embed) win over the session's
}
