// The campaign console: bulk selection and live render progress. Progressive
// enhancement: without this file every form still works.
(function () {
  "use strict";
  // Select all on this page, and a count of what is selected.
  const all = document.getElementById("select-all");
  const count = document.getElementById("selected-count");
  const boxes = function () {
    return Array.prototype.slice.call(document.querySelectorAll("input[name=clip][form=bulk-form]:not([disabled])"));
  };
  const say = function () {
    if (!count) { return; }
    const n = boxes().filter(function (b) { return b.checked; }).length;
    count.textContent = n ? n + " selected" : "";
  };
  if (all) {
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
      say();
    });
    boxes().forEach(function (b) { b.addEventListener("change", say); });
  }

  // Live render progress: status word and bar from the same answer, so they agree.
  const mmss = function (s) {
    s = Math.round(s);
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  };
  document.querySelectorAll("tr.render").forEach(function (row) {
    if (["queued", "running"].indexOf(row.dataset.status) < 0) { return; }
    let delay = 1000;
    const tick = function () {
      fetch(row.dataset.render, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (job) {
          row.querySelector("progress").value = job.progress;
          const word = row.querySelector(".state-word");
          if (word) { word.textContent = job.status_label || job.status; }
          let text = Math.round(job.progress * 100) + "%";
          if (job.eta_seconds !== null && job.eta_seconds !== undefined) { text += " · " + mmss(job.eta_seconds) + " left"; }
          row.querySelector(".pct").textContent = text;
          if (["queued", "running"].indexOf(job.status) < 0) {
            window.location.reload();
          } else {
            delay = Math.min(5000, delay * 1.3);
            setTimeout(tick, delay);
          }
        })
        .catch(function () { setTimeout(tick, 5000); });
    };
    setTimeout(tick, delay);
  });
})();
