// The participant's private status page follows the clip: it asks again after a
// growing pause (quick while the machines work, slow while people review), pauses
// while the tab is hidden, stops when nothing more can change, and reloads the
// page when something did. It also copies the private link.
(function () {
  "use strict";
  const box = document.getElementById("clip-status");
  if (!box) { return; }
  const FINAL = ["withdrawn", "rejected"];            // nothing more will change
  const MACHINE = ["received", "checked"];             // minutes at most
  let status = box.dataset.status;
  let inMashup = box.dataset.inMashup === "yes";
  let delay = MACHINE.indexOf(status) >= 0 ? 2000 : 15000;
  const most = function () { return MACHINE.indexOf(status) >= 0 ? 30000 : 300000; };
  let timer = null;
  let tries = 0;
  const schedule = function () {
    if (FINAL.indexOf(status) >= 0 || tries > 200) { return; }
    timer = setTimeout(poll, delay);
    delay = Math.min(most(), Math.round(delay * 1.5));
  };
  const poll = function () {
    timer = null;
    if (document.hidden) { return; } // resumed by visibilitychange
    tries += 1;
    fetch(box.dataset.api, { headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (clip) {
        if (clip.status !== status || Boolean(clip.in_mashup) !== inMashup) { window.location.reload(); return; }
        schedule();
      })
      .catch(function () { delay = Math.max(delay, 10000); schedule(); });
  };
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null && FINAL.indexOf(status) < 0) { delay = 2000; schedule(); }
  });
  box.dataset.polling = "yes";
  schedule();

  const copy = document.getElementById("copy-link");
  if (copy) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      const done = function () { copy.textContent = "Link copied"; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(window.location.href).then(done, function () {
          window.prompt("Copy this private link:", window.location.href);
        });
      } else { window.prompt("Copy this private link:", window.location.href); }
    });
  }
})();
