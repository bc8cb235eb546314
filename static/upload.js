// The participant's upload. The tus protocol (chunks, resuming, retrying) is
// tus-js-client (static/vendor/tus-js-client); this file only handles the form, the
// resume key and the messages. Without JavaScript, or in a browser without what
// this needs, the form posts the file in one request as before.
(function () {
  "use strict";

  const form = document.getElementById("upload-form");
  if (!form || !window.tus || !window.tus.isSupported || !window.crypto || !window.crypto.subtle ||
      !window.localStorage || !window.TextEncoder) {
    return;
  }
  const CHUNK = 4 * 1024 * 1024;       // bytes per PATCH
  const ENDS = 1024 * 1024;            // the fingerprint hashes this much of each end
  const SAMPLES = 16;                  // ... and this many slices spread over the middle
  const SAMPLE = 64 * 1024;            // of this many bytes (portal/uploads: sample_starts)
  const MAX_ATTEMPTS = 80;             // about half an hour of trying before asking the person
  const MAX_DELAY = 30000;             // ms between two tries at most

  const bar = document.getElementById("upload-progress");
  const note = document.getElementById("upload-note");
  const button = form.querySelector("button[type=submit]");
  const say = function (text, isError) {
    note.textContent = text;
    note.className = isError ? "error" : "muted";
    note.setAttribute("role", isError ? "alert" : "status");
  };
  const percent = function (part, whole) { return whole ? Math.floor((100 * part) / whole) : 0; };

  // Old resume entries of the page's own client, before tus-js-client: never used again.
  Object.keys(localStorage).forEach(function (k) {
    if (k.indexOf("tutti-upload:") === 0) { localStorage.removeItem(k); }
  });

  const hex = function (buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  };
  const sha256 = function (data) { return crypto.subtle.digest("SHA-256", data).then(hex); };
  const readSlice = function (blob) {
    if (blob.arrayBuffer) { return blob.arrayBuffer(); }
    return new Response(blob).arrayBuffer();
  };

  // SHA-256 of SAMPLES slices spread evenly over the file ("" when the two ends cover it):
  // two takes with the same size and ends but another middle never share an upload.
  const samplesOf = function (file) {
    if (file.size <= 2 * ENDS) { return Promise.resolve(""); }
    const reads = [];
    for (let i = 0; i < SAMPLES; i += 1) {
      const start = Math.floor((i * (file.size - SAMPLE)) / (SAMPLES - 1));
      reads.push(readSlice(file.slice(start, start + SAMPLE)));
    }
    return Promise.all(reads).then(function (buffers) {
      const all = new Uint8Array(SAMPLES * SAMPLE);
      buffers.forEach(function (b, i) { all.set(new Uint8Array(b), i * SAMPLE); });
      return sha256(all);
    });
  };

  // What makes a resume safe: the same campaign, the same content (SHA-256 of the
  // first and last megabyte and of slices of the middle, and the size) and the same
  // submission (name, part, place, consent). Anything else starts a new upload.
  const fingerprintOf = function (file, fields) {
    const span = Math.min(ENDS, file.size);
    return Promise.all([
      readSlice(file.slice(0, span)).then(sha256),
      readSlice(file.slice(file.size - span)).then(sha256),
      sha256(new TextEncoder().encode(JSON.stringify(fields))),
      samplesOf(file),
    ]).then(function (h) {
      return { head: h[0], tail: h[1], samples: h[3],
               key: ["tutti", fields.campaign, file.size, h[0], h[1], h[3], h[2]].join(":") };
    });
  };

  const statusOf = function (err) {
    return err && err.originalResponse ? err.originalResponse.getStatus() : 0;
  };
  const serverMessage = function (err) {
    try {
      const body = JSON.parse(err.originalResponse.getBody());
      return body && typeof body.error === "string" ? body.error : null;
    } catch (e) {
      return null;
    }
  };
  const retryAfter = function (err) {  // seconds (or an HTTP date) from Retry-After, in ms
    const value = err.originalResponse && err.originalResponse.getHeader("Retry-After");
    if (!value) { return null; }
    const seconds = Number(value);
    const ms = isNaN(seconds) ? Date.parse(value) - Date.now() : seconds * 1000;
    return isNaN(ms) ? null : Math.max(0, Math.min(ms, 10 * 60 * 1000));
  };

  let running = false;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (running) { return; }  // a double click starts nothing twice
    const file = form.querySelector("input[name=file]").files[0];
    if (!file) { return; }
    const data = new FormData(form);
    const fields = {
      campaign: form.dataset.campaign, name: data.get("name") || "", part: data.get("part") || "",
      location: data.get("location") || "", consent: data.get("consent") ? "yes" : "",
    };
    running = true;
    button.disabled = true;
    bar.hidden = false;
    bar.removeAttribute("value");  // busy until the first byte counts
    say("Getting your video ready…", false);

    let kept = 0;      // bytes the server has confirmed
    let upload = null;
    let waiting = null; // the retry under way, while we wait: {until, text}
    let ticker = null;
    const finish = function () {
      running = false;
      button.disabled = false;
      if (ticker) { clearInterval(ticker); ticker = null; }
      window.removeEventListener("online", onOnline);
    };
    const fail = function (text) { finish(); say(text, true); };
    const showWait = function () {
      if (!waiting) { return; }
      const seconds = Math.max(0, Math.ceil((waiting.until - Date.now()) / 1000));
      const offline = navigator.onLine === false;
      let text = offline
        ? "You are offline. The upload goes on by itself when the connection is back"
        : waiting.text + (seconds > 0 ? " in " + seconds + " s" : " now");
      text += " (" + percent(kept, file.size) + "% already sent, nothing is lost).";
      say(text, false);
    };
    const onOnline = function () {  // back online: try now rather than at the end of a wait
      if (waiting && upload) {
        waiting = null;
        upload.abort().then(function () { upload.start(); });
      }
    };
    window.addEventListener("online", onOnline);

    const done = function (statusUrl) {
      finish();
      bar.value = 100;
      say("Uploaded. Opening your private status page…", false);
      window.location.assign(statusUrl);
    };
    // The clip is made once the last byte arrives; the answer that says so (to a PATCH,
    // or to the HEAD of a resume) names it. Should it not, the upload's own page does.
    const succeeded = function (payload) {
      const answer = payload && payload.lastResponse;
      const statusUrl = answer && answer.getHeader("Tutti-Status-Url");
      if (statusUrl) { done(new URL(statusUrl, upload.url).toString()); return; }
      fetch(upload.url, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (body && body.status_url) { done(body.status_url); return; }
          fail("Your video arrived, but its page could not be opened. Reload this page and " +
               "press Upload again with the same video: it will not be sent twice.");
        })
        .catch(function () {
          fail("Your video arrived, but the connection dropped before its page could open. " +
               "Press Upload again with the same video: it will not be sent twice.");
        });
    };

    const delays = [];
    const shouldRetry = function (err, attempt, options) {
      const status = statusOf(err);
      let text;
      if (status === 0) {
        text = "The connection dropped; trying again";
        // Chromium refuses to send a file that changed on the device since it was chosen
        // (ERR_UPLOAD_FILE_CHANGED), which looks like a dropped connection: reading it says.
        readSlice(file.slice(0, Math.min(1, file.size))).catch(function () {
          if (!running) { return; }
          waiting = null;
          if (upload) { upload.abort(); }
          fail("Your video changed on this device while it was being sent (was another " +
               "recording saved over it?). Choose it again and press Upload.");
        });
      }
      else if (status === 423 || status === 409) { text = "The server is still busy with your video; trying again"; }
      else if (status === 429) { text = "Many people are uploading right now; trying again"; }
      else if (status >= 500) { text = "The server had a problem; trying again"; }
      else { return false; }  // the other answers are final: onError says what to do
      // exponential back-off with jitter, or what the server asked for
      const base = Math.min(MAX_DELAY, 1000 * Math.pow(2, Math.min(attempt, 5)));
      let delay = Math.round(base / 2 + Math.random() * base / 2);
      const asked = retryAfter(err);
      if (asked !== null) { delay = Math.max(delay, asked); }
      options.retryDelays[attempt] = delay;
      waiting = { until: Date.now() + delay, text: text };
      showWait();
      return true;
    };
    const failed = function (err) {
      const status = statusOf(err);
      const server = serverMessage(err);
      if (status === 460) {
        fail(server || "The video changed while it was being sent. Choose it again and press Upload.");
      } else if (status === 404 || status === 410) {
        fail("This upload was removed on the server. Press Upload to send your video again.");
      } else if (status >= 400 && status < 500 && status !== 409 && status !== 423 && status !== 429) {
        fail(server || "The upload was refused. Check the form and press Upload again.");
      } else {
        fail("The connection keeps dropping. Press Upload again when it is better: " +
             "what was already sent is kept (" + percent(kept, file.size) + "%).");
      }
    };

    for (let i = 0; i < MAX_ATTEMPTS; i += 1) { delays.push(1000); }
    fingerprintOf(file, fields).then(function (print) {
      upload = new tus.Upload(file, {
        endpoint: new URL(form.dataset.uploads, window.location.href).toString(),
        chunkSize: CHUNK,
        retryDelays: delays,
        metadata: {
          campaign: fields.campaign, filename: file.name, name: fields.name, part: fields.part,
          location: fields.location, consent: fields.consent,
          head_sha256: print.head, tail_sha256: print.tail, samples_sha256: print.samples,
        },
        fingerprint: function () { return Promise.resolve(print.key); },
        storeFingerprintForResuming: true,
        // kept after success: the same video and form sent again opens the same clip's page
        // (the server answers the finished upload's HEAD with its link), never a second clip
        removeFingerprintOnSuccess: false,
        onShouldRetry: shouldRetry,
        onProgress: function (sent, total) {
          if (waiting && Date.now() < waiting.until) { return; }
          waiting = null;
          bar.value = percent(sent, total);
          say("Uploading… " + bar.value + "%", false);
        },
        onChunkComplete: function (size, accepted) { kept = accepted; },
        onAfterResponse: function (req, res) {  // what the server holds, also after a HEAD
          const offset = parseInt(res.getHeader("Upload-Offset"), 10);
          if (res.getStatus() < 300 && !isNaN(offset)) { kept = offset; }
        },
        onSuccess: succeeded,
        onError: failed,
      });
      ticker = setInterval(showWait, 1000);
      return upload.findPreviousUploads().then(function (previous) {
        if (previous.length) {
          previous.sort(function (a, b) { return String(b.creationTime).localeCompare(String(a.creationTime)); });
          upload.resumeFromPreviousUpload(previous[0]);
        }
        upload.start();
      });
    }).catch(function () {
      fail("Your video could not be read. Choose it again and press Upload.");
    });
  });
})();
