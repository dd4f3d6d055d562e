// pinkie dashboard: the web terminal on a host page. A login shell on the
// host over the hub (WebSocket to the hub, the fleet's shell subjects from
// there on). Built by `go generate ./dashboard` into ../assets/static/term/.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";

(function () {
  "use strict";
  var box = document.getElementById("terminal");
  var button = document.getElementById("terminal-open");
  var state = document.getElementById("terminal-state");
  if (!box || !button) return;
  var enc = new TextEncoder();
  var term = null, fit = null;
  window.addEventListener("resize", function () { if (fit) fit.fit(); });

  function say(text, cls) {
    state.textContent = text;
    state.className = "terminal-state " + (cls || "");
  }

  // guest: a container or MicroVM of the host (its button in the guests
  // panel); none: the host.
  function open(guest) {
    guest = typeof guest === "string" ? guest : "";
    button.disabled = true;
    box.hidden = false;
    if (term) term.dispose(); // the previous session's screen
    box.textContent = "";
    var t = new Terminal({ cursorBlink: true, convertEol: false, scrollback: 5000, fontSize: 14 });
    var f = new FitAddon();
    term = t; fit = f;
    t.loadAddon(f);
    t.open(box);
    f.fit();
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    var url = proto + "//" + location.host + "/hosts/" + encodeURIComponent(box.dataset.host) + "/terminal" +
      "?rows=" + t.rows + "&cols=" + t.cols + (guest ? "&guest=" + encodeURIComponent(guest) : "");
    var ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    var ended = false;
    say(guest ? "connecting to " + guest + "…" : "connecting…");
    if (guest) box.scrollIntoView({ block: "nearest" });
    function end(text, cls) {
      if (ended) return;
      ended = true;
      say(text, cls);
      t.options.disableStdin = true;
      button.disabled = false;
      button.textContent = "Open a new terminal";
    }
    ws.onmessage = function (e) {
      if (typeof e.data !== "string") {
        t.write(new Uint8Array(e.data));
        return;
      }
      var m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      if (m.t === "started") { say(guest ? "connected to " + guest : "connected", "live"); t.focus(); }
      else if (m.t === "exit") end("ended: exit code " + m.code, "");
      else if (m.t === "error") { t.write("\r\n\x1b[31m" + m.error + "\x1b[0m\r\n"); end("ended: " + m.error, "down"); }
    };
    ws.onclose = function (e) {
      end(e.code === 1000 ? "ended" : "disconnected (" + (e.reason || e.code) + ")", e.code === 1000 ? "" : "down");
    };
    t.onData(function (d) { if (ws.readyState === 1) ws.send(enc.encode(d)); });
    t.onBinary(function (d) {
      if (ws.readyState !== 1) return;
      var b = new Uint8Array(d.length);
      for (var i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
      ws.send(b);
    });
    t.onResize(function (sz) {
      if (ws.readyState === 1) ws.send(JSON.stringify({ t: "resize", rows: sz.rows, cols: sz.cols }));
    });
    window.pinkieTerminal = t; // for debugging in the browser console
  }
  button.addEventListener("click", function () { open(""); });
  // The guests panel is a live region: its buttons are replaced whenever the
  // page refreshes it, so one listener on the document serves them all.
  document.addEventListener("click", function (e) {
    var b = e.target instanceof Element ? e.target.closest(".terminal-guest") : null;
    if (b && !button.disabled) open(b.dataset.guest);
  });
})();
