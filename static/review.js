// The review view, driven by the keyboard. Every action is a plain link or form on
// the page, so the page works without this file; the keys only press them.
//   J / ArrowRight  next clip           K / ArrowLeft  previous clip
//   A               approve, go on      D              decline: type the reason, Enter
//   N               nudge box           Space / P      play or pause
//   U               back to the list    Escape         leave a text box
(function () {
  "use strict";
  const root = document.getElementById("review");
  if (!root) { return; }
  const player = document.getElementById("review-player");
  const go = function (url) { if (url) { window.location.assign(url); } };
  const typing = function (el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
                  el.isContentEditable);
  };
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    const target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") { target.blur(); event.preventDefault(); }
      return; // Enter in the reason box submits the decline form by itself
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    let done = true;
    if (key === "j" || key === "ArrowRight") {
      go(root.dataset.next);
    } else if (key === "k" || key === "ArrowLeft") {
      go(root.dataset.previous);
    } else if (key === "a") {
      const approve = document.getElementById("approve");
      if (approve && !approve.disabled) { approve.click(); }
    } else if (key === "d") {
      const reason = document.getElementById("decline-reason");
      if (reason) { reason.focus(); reason.select(); }
    } else if (key === "n") {
      const nudge = document.getElementById("nudge-ms");
      if (nudge) { nudge.focus(); nudge.select(); }
    } else if ((key === " " || key === "p") && player) {
      if (target === player && key === " ") { return; } // the player's own control
      if (player.paused) { player.play().catch(function () {}); } else { player.pause(); }
    } else if (key === "u") {
      go(root.dataset.list);
    } else {
      done = false;
    }
    if (done) { event.preventDefault(); }
  });
})();
