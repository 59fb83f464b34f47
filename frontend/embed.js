/* callbridge embed: a floating call button for an integrator's page (docs/embedding.md).
 *
 *   <script src="https://calls.example.com/static/embed.js"></script>
 *   <script>
 *     Callbridge.mount({
 *       getToken: () => fetch("/my/callbridge-session", {method: "POST"})
 *         .then((response) => response.json()).then((body) => body.token),
 *       onEvent: (event) => console.log(event.type, event),
 *     });
 *   </script>
 *
 * The button opens a panel framing callbridge's /talk/embed/ (allow="microphone; autoplay").
 * When the frame says `ready`, the session token (from `token` or `getToken()`) is posted
 * into it, to callbridge's exact origin: it never appears in this page's URL, the frame's
 * URL or any server's access log. The frame's events (ready, ringing, connected, ended,
 * error) reach `onEvent` and are dispatched on `window` as `callbridge:<type>` CustomEvents.
 * A classic script with no build step and no dependencies.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var scriptOrigin = script && script.src ? new URL(script.src).origin : null;

  var STYLE =
    ".cb-embed-button{position:fixed;right:1.25rem;bottom:1.25rem;z-index:2147483646;" +
    "font:600 1rem system-ui,sans-serif;padding:.8rem 1.2rem;min-height:44px;border:0;" +
    "border-radius:2rem;background:var(--cb-accent,#1f6feb);color:#fff;cursor:pointer;" +
    "box-shadow:0 2px 10px #0004}" +
    ".cb-embed-button:focus-visible{outline:3px solid #000;outline-offset:3px}" +
    ".cb-embed-panel{position:fixed;right:1.25rem;bottom:5rem;z-index:2147483647;" +
    "width:min(24rem,calc(100vw - 2.5rem));height:min(40rem,calc(100vh - 7rem));" +
    "border:0;border-radius:.75rem;box-shadow:0 4px 24px #0005;background:#fff}" +
    ".cb-embed-panel[hidden]{display:none}";

  function mount(options) {
    options = options || {};
    var server = new URL(options.server || scriptOrigin).origin;
    var frameUrl = new URL("/talk/embed/", server);
    if (options.queue) frameUrl.searchParams.set("queue", options.queue);
    if (options.lang) frameUrl.searchParams.set("lang", options.lang);  // else the browser's
    var onEvent = typeof options.onEvent === "function" ? options.onEvent : function () {};
    var label = options.label || "Call us";
    var container = options.container || document.body;

    if (!document.getElementById("cb-embed-style")) {
      var style = document.createElement("style");
      style.id = "cb-embed-style";
      style.textContent = STYLE;
      document.head.appendChild(style);
    }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "cb-embed-button";
    button.textContent = label;
    button.setAttribute("aria-expanded", "false");
    if (options.accent) button.style.setProperty("--cb-accent", options.accent);
    container.appendChild(button);

    var frame = null;

    function getToken() {
      if (typeof options.getToken === "function") return Promise.resolve(options.getToken());
      return Promise.resolve(options.token);
    }

    function onMessage(event) {
      // Only our frame, only from callbridge's origin.
      if (!frame || event.source !== frame.contentWindow || event.origin !== server) return;
      var data = event.data;
      if (!data || data.source !== "callbridge" || typeof data.type !== "string") return;
      // Each load of the frame says ready once (a reload asks again).
      if (data.type === "ready") {
        getToken().then(function (token) {
          frame.contentWindow.postMessage({type: "callbridge.session", token: token}, server);
        }, function (error) {
          deliver({source: "callbridge", type: "error", code: "UNAUTHORIZED",
                   message: "No session token: " + error});
        });
      }
      deliver(data);
    }

    function deliver(data) {
      try {
        onEvent(data);
      } finally {
        window.dispatchEvent(new CustomEvent("callbridge:" + data.type, {detail: data}));
      }
    }

    function open() {
      if (!frame) {
        frame = document.createElement("iframe");
        frame.className = "cb-embed-panel";
        frame.title = options.title || label;
        frame.allow = "microphone; autoplay";
        frame.src = frameUrl.href;
        container.appendChild(frame);
      }
      frame.hidden = false;
      button.setAttribute("aria-expanded", "true");
    }

    function close() {
      // Hidden, not removed: a call in progress goes on.
      if (frame) frame.hidden = true;
      button.setAttribute("aria-expanded", "false");
    }

    window.addEventListener("message", onMessage);
    button.addEventListener("click", function () {
      if (frame && !frame.hidden) close();
      else open();
    });
    if (options.open) open();

    return {
      open: open,
      close: close,
      button: button,
      get frame() { return frame; },
      unmount: function () {
        window.removeEventListener("message", onMessage);
        if (frame) frame.remove();
        button.remove();
        frame = null;
      },
    };
  }

  window.Callbridge = {mount: mount};
})();
