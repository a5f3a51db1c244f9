// conveyor console: the little script it needs, vendored (no CDN, works offline).
// Live updates: an element with data-refresh="N" is re-read from the server every N seconds
// (the same URL, the same session); polling pauses while the viewer types in a form.
(function () {
  "use strict";
  function refresh(el, seconds) {
    window.setTimeout(function tick() {
      var active = document.activeElement;
      var typing = active && (active.tagName === "INPUT" || active.tagName === "SELECT");
      if (document.hidden || typing) { window.setTimeout(tick, seconds * 1000); return; }
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Refresh": "1" } })
        .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
        .then(function (html) {
          if (html) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            var fresh = doc.getElementById(el.id);
            if (fresh) { el.innerHTML = fresh.innerHTML; }
          }
        })
        .catch(function () { /* the next round tries again */ })
        .finally(function () { window.setTimeout(tick, seconds * 1000); });
    }, seconds * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      refresh(el, Number(el.getAttribute("data-refresh")) || 5);
    });
  });
})();
