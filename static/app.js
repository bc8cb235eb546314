// Progressive enhancement only: every form works without this file.
(function () {
  "use strict";

  // Upload with a progress bar; on failure keep the form filled in and say why.
  const form = document.getElementById("upload-form");
  if (form && window.XMLHttpRequest && window.FormData) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const bar = document.getElementById("upload-progress");
      const note = document.getElementById("upload-note");
      const button = form.querySelector("button[type=submit]");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      bar.hidden = false;
      button.disabled = true;
      note.textContent = "Uploading…";
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) {
          bar.value = Math.round((100 * e.loaded) / e.total);
          note.textContent = "Uploading… " + bar.value + "%";
        }
      };
      xhr.onload = function () {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
        if (xhr.status === 201 && body.status_url) {
          note.textContent = "Uploaded. Opening your private status page…";
          window.location.assign(body.status_url);
        } else {
          button.disabled = false;
          note.textContent = body.error || ("The upload failed (" + xhr.status + "). Please try again.");
          note.className = "error";
        }
      };
      xhr.onerror = function () {
        button.disabled = false;
        note.textContent = "The connection dropped. Check your network and press Upload again.";
        note.className = "error";
      };
      xhr.send(new FormData(form));
    });
  }

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
