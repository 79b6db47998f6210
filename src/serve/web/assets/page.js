// flowc's page: refresh the live part of a page when the journal changes.
// A part holding a form someone is filling in is left alone until they are done.
"use strict";
(function () {
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var url = live.getAttribute("data-live");
  var busy = false, again = false, first = true;
  function editing() {
    var a = document.activeElement;
    if (a && live.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) return true;
    var fields = live.querySelectorAll("input[type=text], input[type=number], textarea");
    for (var i = 0; i < fields.length; i++) if (fields[i].value !== "") return true;
    return false;
  }
  function refresh() {
    if (busy) { again = true; return; }
    if (editing()) return;
    busy = true;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null && !editing()) live.innerHTML = html; })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var source = new EventSource("/live");
  source.addEventListener("journal", function () {
    if (first) { first = false; return; }
    refresh();
  });
})();
