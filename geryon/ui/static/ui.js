// Geryon dashboard: live updates. The page names its event stream in <body data-live>;
// each message is {"parts": {ID: HTML}, "updated": TEXT}: the server renders, we only
// put each part into the element with that id. No libraries, no build step.
"use strict";
(function () {
  var url = document.body.getAttribute("data-live");
  if (!url || !window.EventSource) {
    return;
  }
  var updates = 0;
  var source = new EventSource(url);
  source.onmessage = function (event) {
    var msg;
    try {
      msg = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    var parts = msg.parts || {};
    Object.keys(parts).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) {
        el.innerHTML = parts[id];
      }
    });
    var stamp = document.getElementById("updated");
    if (stamp && msg.updated) {
      stamp.textContent = msg.updated;
    }
    updates += 1;
    document.body.setAttribute("data-updates", String(updates));
    document.body.classList.remove("offline");
  };
  source.onerror = function () {
    document.body.classList.add("offline");   // EventSource reconnects by itself
  };
})();
