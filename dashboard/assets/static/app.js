// pinkie dashboard: live updates over server-sent events, relative times,
// instant filtering. The pages work without it; it only keeps them fresh.
(function () {
  "use strict";
  var topics = (document.body.dataset.topics || "").split(" ").filter(Boolean);
  var conn = function () { return document.getElementById("conn"); };

  function fmt(ms) {
    var s = Math.round(Math.abs(ms) / 1000), out;
    if (s < 60) out = s + "s";
    else if (s < 3600) out = Math.floor(s / 60) + "m";
    else if (s < 172800) out = Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
    else out = Math.floor(s / 86400) + "d";
    return ms < 0 ? "in " + out : out + " ago";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.ago[datetime]").forEach(function (t) {
      var d = Date.parse(t.getAttribute("datetime"));
      if (!isNaN(d)) t.textContent = fmt(now - d);
    });
  }
  setInterval(tick, 1000);

  function wants(topic) {
    return topics.some(function (t) {
      return t === topic || (t.endsWith("*") && topic.startsWith(t.slice(0, -1)));
    });
  }

  var timer = null, busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) {
            el.innerHTML = fresh.innerHTML;
            if (el.id !== "fresh") { el.classList.remove("changed"); void el.offsetWidth; el.classList.add("changed"); }
          }
        });
        applyFilter();
        tick();
        setConn("live", true);
      })
      .catch(function () { setConn("update failed, retrying", false); })
      .finally(function () { busy = false; if (again) { again = false; schedule(); } });
  }
  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, 50); }
  function setConn(text, ok) {
    var c = conn();
    if (!c) return;
    c.textContent = text;
    c.className = "conn " + (ok ? "live" : "down");
  }

  if (topics.length && window.EventSource) {
    var es = new EventSource("/events");
    es.addEventListener("hello", function () { setConn("live", true); schedule(); });
    es.addEventListener("change", function (e) { if (wants(e.data)) schedule(); });
    es.onerror = function () { setConn("reconnecting…", false); };
  } else {
    setConn("static", false);
  }

  // Instant filtering of the overview, on top of the server-side filter.
  var q = document.getElementById("q"), tag = document.getElementById("tag");
  function applyFilter() {
    if (!q) return;
    var s = q.value.trim().toLowerCase(), tg = tag ? tag.value : "";
    document.querySelectorAll(".card[data-host]").forEach(function (c) {
      var ok = c.dataset.host.toLowerCase().indexOf(s) >= 0 &&
        (!tg || (" " + c.dataset.tags + " ").indexOf(" " + tg + " ") >= 0);
      c.hidden = !ok;
    });
  }
  if (q) { q.addEventListener("input", applyFilter); }
  if (tag) { tag.addEventListener("change", applyFilter); }
})();
