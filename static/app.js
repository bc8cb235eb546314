// Progressive enhancement only: every form works without this file.
(function () {
  "use strict";

  // Resumable upload (tus 1.0.0) with a progress bar: the file goes in chunks;
  // a dropped connection retries and continues from what arrived, and a page
  // reload with the same file resumes too. Without JS the form posts as usual.
  const form = document.getElementById("upload-form");
  if (form && window.fetch && window.XMLHttpRequest && window.localStorage) {
    const CHUNK = 4 * 1024 * 1024;
    const b64 = function (text) { return btoa(unescape(encodeURIComponent(text))); };
    const sleep = function (ms) { return new Promise(function (r) { setTimeout(r, ms); }); };
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const bar = document.getElementById("upload-progress");
      const note = document.getElementById("upload-note");
      const button = form.querySelector("button[type=submit]");
      const file = form.querySelector("input[name=file]").files[0];
      const fields = new FormData(form);
      const slug = form.dataset.campaign;
      const key = "tutti-upload:" + slug + ":" + file.name + ":" + file.size + ":" + file.lastModified;
      const say = function (text, isError) { note.textContent = text; note.className = isError ? "error" : "muted"; };
      const show = function (offset) {
        bar.value = Math.round((100 * offset) / file.size);
        say("Uploading… " + bar.value + "%", false);
      };
      const fail = function (text) { button.disabled = false; say(text, true); };
      bar.hidden = false;
      button.disabled = true;

      const create = function () {
        const meta = ["campaign " + b64(slug), "filename " + b64(file.name)];
        ["name", "part", "location"].forEach(function (k) { meta.push(k + " " + b64(fields.get(k) || "")); });
        meta.push("consent " + b64(fields.get("consent") ? "yes" : ""));
        return fetch(form.dataset.uploads, { method: "POST", headers: {
          "Tus-Resumable": "1.0.0", "Upload-Length": String(file.size), "Upload-Metadata": meta.join(",") } })
          .then(function (r) {
            if (r.status === 201) { return r.headers.get("Location"); }
            return r.json().then(function (body) { throw new Error(body.error || ("The upload was refused (" + r.status + ").")); });
          });
      };
      const offsetOf = function (url) {
        return fetch(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } }).then(function (r) {
          if (!r.ok) { throw new Error("gone"); }
          return parseInt(r.headers.get("Upload-Offset"), 10);
        });
      };
      const sendChunk = function (url, offset) {
        return new Promise(function (resolve, reject) {
          const xhr = new XMLHttpRequest();
          xhr.open("PATCH", url);
          xhr.setRequestHeader("Tus-Resumable", "1.0.0");
          xhr.setRequestHeader("Upload-Offset", String(offset));
          xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
          xhr.upload.onprogress = function (e) { show(offset + e.loaded); };
          xhr.onload = function () {
            if (xhr.status === 204) {
              resolve({ offset: parseInt(xhr.getResponseHeader("Upload-Offset"), 10),
                        status: xhr.getResponseHeader("Tutti-Status-Url") });
            } else if (xhr.status === 409) {
              resolve({ offset: parseInt(xhr.getResponseHeader("Upload-Offset"), 10), status: null });
            } else {
              let body = {};
              try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
              const error = new Error(body.error || ("The upload failed (" + xhr.status + ")."));
              error.fatal = xhr.status >= 400 && xhr.status < 500;
              reject(error);
            }
          };
          xhr.onerror = function () { reject(new Error("network")); };
          xhr.send(file.slice(offset, Math.min(file.size, offset + CHUNK)));
        });
      };
      const run = async function () {
        let url = localStorage.getItem(key);
        let offset = 0;
        if (url) { try { offset = await offsetOf(url); } catch (err) { url = null; } }
        if (!url) { url = await create(); localStorage.setItem(key, url); offset = 0; }
        let failures = 0;
        for (;;) {
          try {
            const answer = await sendChunk(url, offset);
            failures = 0;
            offset = answer.offset;
            show(offset);
            if (answer.status) { return answer.status; }
          } catch (err) {
            if (err.fatal) { throw err; }
            failures += 1;
            if (failures > 30) { throw new Error("The connection keeps dropping. Press Upload again later: it continues where it stopped."); }
            say("Connection lost; retrying… (" + Math.round((100 * offset) / file.size) + "% kept)", false);
            await sleep(Math.min(10000, 500 * failures));
            try { offset = await offsetOf(url); } catch (e) { /* still offline: try again */ }
          }
        }
      };
      run().then(function (statusUrl) {
        localStorage.removeItem(key);
        say("Uploaded. Opening your private status page…", false);
        window.location.assign(statusUrl);
      }).catch(function (err) { fail(err.message); });
    });
  }

  // (The status page's polling: static/status.js.)

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
  // (Live render progress for organizers: static/console.js.)
})();
