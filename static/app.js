// Progressive enhancement only: every form works without this file.
(function () {
  "use strict";

  // The resumable upload of the participant's page lives in upload.js (with
  // tus-js-client, loaded by that page only).

  // The status page follows the clip until it settles.
  const status = document.getElementById("clip-status");
  if (status) {
    const settled = ["rejected", "failed", "withdrawn", "approved", "declined"];
    const poll = function () {
      fetch(status.dataset.api, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (clip) {
          if (clip.status !== status.dataset.status) { window.location.reload(); return; }
          if (settled.indexOf(clip.status) < 0) { setTimeout(poll, 2000); }
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    if (settled.indexOf(status.dataset.status) < 0) { setTimeout(poll, 2000); }
  }

  // "Find yourself": a credit's timestamp seeks the player.
  const player = document.getElementById("mashup");
  if (player) {
    const seek = function (seconds) { player.currentTime = seconds; player.play().catch(function () {}); };
    document.querySelectorAll("[data-seek]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        seek(parseFloat(link.dataset.seek));
        player.scrollIntoView({ behavior: "smooth" });
      });
    });
    const hash = /^#t=([0-9.]+)$/.exec(window.location.hash);
    if (hash) { player.addEventListener("loadedmetadata", function () { seek(parseFloat(hash[1])); }, { once: true }); }
  }

  // Live render progress for organizers.
  document.querySelectorAll("tr.render").forEach(function (row) {
    if (["queued", "running"].indexOf(row.dataset.status) < 0) { return; }
    const tick = function () {
      fetch(row.dataset.render, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (job) {
          row.querySelector("progress").value = job.progress;
          let text = Math.round(job.progress * 100) + "%";
          if (job.eta_seconds !== null && job.eta_seconds !== undefined) {
            const s = Math.round(job.eta_seconds);
            text += " · " + String(Math.floor(s / 60)).padStart(2, "0") + ":" +
              String(s % 60).padStart(2, "0") + " left";
          }
          row.querySelector(".pct").textContent = text;
          if (job.status !== row.dataset.status && ["queued", "running"].indexOf(job.status) < 0) {
            window.location.reload();
          } else { setTimeout(tick, 1500); }
        })
        .catch(function () { setTimeout(tick, 5000); });
    };
    setTimeout(tick, 1500);
  });
})();
