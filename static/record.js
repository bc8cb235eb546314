// Record along the guide, on the campaign page (issue 16). The guide plays through
// Web Audio, the camera and microphone record with MediaRecorder, and the take's start
// is read on the guide's own clock (the AudioContext's), so the server can check it
// against the sound. Takes are kept in IndexedDB until they are uploaded (tus-js-client,
// as upload.js), so a closed tab or a lost connection loses nothing. Where the browser
// cannot record, the page says so and the file upload below stays the way to send.
(function () {
  "use strict";

  const box = document.getElementById("record");
  if (!box) { return; }
  const form = document.getElementById("upload-form");
  const $ = function (id) { return document.getElementById(id); };
  const note = $("record-note");
  const preview = $("record-preview");
  const review = $("record-review-video");
  const meter = $("record-level");
  const countLabel = $("record-count");
  const bar = $("record-progress");
  const buttons = {
    record: $("record-start"), stop: $("record-stop"), send: $("record-send"),
    retake: $("record-retake"), play: $("record-play"), calibrate: $("record-calibrate"),
    discard: $("record-discard"),
  };
  const COUNT_IN = 3;            // seconds of counting before the guide
  const TAIL = 0.5;              // seconds recorded after the guide ends
  const SHORT = 3;               // a take shorter than this (s) gets a word
  const MIN_TAKE = 1;            // a take shorter than this (s) holds nothing: not offered
  const MIN_SUNG = 0.5;          // a take must run this far past the count-in to be sent (s)
  // the largest delay a calibration here can measure (the clicks are looked for from -0.2
  // to +0.5 s): a stored one beyond it is damaged and is not used
  const MAX_CALIBRATION = 0.5;
  const MAX_LATENCY = 1;         // what the server takes for any latency (s)
  const CHUNK = 4 * 1024 * 1024; // bytes per PATCH, as upload.js
  const LATENCY_KEY = "tutti-latency";
  const DB_NAME = "tutti-takes";
  const campaign = box.dataset.campaign;

  const say = function (text, isError) {
    note.textContent = text;
    note.className = isError ? "error" : "muted";
    note.setAttribute("role", isError ? "alert" : "status");
  };
  const show = function (which) {  // which buttons the step offers
    Object.keys(buttons).forEach(function (k) {
      if (buttons[k]) { buttons[k].hidden = which.indexOf(k) < 0; }
    });
  };

  const AudioCtx = window.AudioContext || window.webkitAudioContext;
  const supported = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia &&
                       window.MediaRecorder && AudioCtx && window.indexedDB && window.tus &&
                       window.tus.isSupported && window.crypto && window.crypto.subtle &&
                       window.TextEncoder);
  if (!supported) {
    $("record-unsupported").hidden = false;
    return;
  }
  box.hidden = false;

  // --- IndexedDB: the takes (what they are) and their bytes, chunk by chunk -------------
  // The recorder hands over a chunk every second (CHUNK_MS) and each is written at once,
  // so a tab closed or crashed mid-take keeps all but the last second: on the next visit
  // the take is put together from its chunks and offered. A take's row never holds its
  // bytes (version 1 rows held a ``blob``: still read).
  const CHUNK_MS = 1000;
  const EARLY_CHUNKS = 3;  // the take's start is found on its first chunks (below)
  const openDb = function () {
    return new Promise(function (resolve, reject) {
      const req = indexedDB.open(DB_NAME, 2);
      req.onupgradeneeded = function () {
        const db = req.result;
        if (!db.objectStoreNames.contains("takes")) { db.createObjectStore("takes", { keyPath: "id" }); }
        if (!db.objectStoreNames.contains("chunks")) { db.createObjectStore("chunks", { keyPath: ["take", "seq"] }); }
      };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
      req.onblocked = function () { reject(new Error("blocked")); };
    });
  };
  const inStores = function (mode, work) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        const tx = db.transaction(["takes", "chunks"], mode);
        const result = work(tx.objectStore("takes"), tx.objectStore("chunks"));
        tx.oncomplete = function () { db.close(); resolve(result && result.result); };
        tx.onerror = tx.onabort = function () { db.close(); reject(tx.error); };
      });
    });
  };
  const rowOf = function (take) {  // what is kept of a take besides its bytes
    const row = Object.assign({}, take);
    delete row.blob;
    return row;
  };
  // A take sent (from this tab or another of this browser) leaves its row marked SENT,
  // its bytes deleted: no tab offers it again, and no tab's later write (the form typed
  // into, Send pressed) turns it back into a take to send (red team W1: two tabs sent one
  // kept take and made two clips). ``keep`` resolves to the row as it was before.
  const SENT = "sent";
  const SENT_KEPT_MS = 7 * 24 * 3600 * 1000;  // how long a sent take's mark is kept
  const keep = function (take) {
    return inStores("readwrite", function (s) {
      const before = s.get(take.id);
      before.onsuccess = function () {
        if (!before.result || before.result.state !== SENT) { s.put(rowOf(take)); }
      };
      return before;
    });
  };
  const chunksOf = function (id) { return IDBKeyRange.bound([id, 0], [id, Infinity]); };
  const keepChunk = function (id, seq, blob) {
    return inStores("readwrite", function (s, c) { return c.put({ take: id, seq: seq, blob: blob }); });
  };
  const forget = function (id) {
    return inStores("readwrite", function (s, c) { c.delete(chunksOf(id)); return s.delete(id); });
  };
  const keptTakes = function () { return inStores("readonly", function (s) { return s.getAll(); }); };
  // Tabs of this browser tell each other when a take is sent, so one that shows it for
  // review says so at once (the Web Lock and the SENT mark below are what make it sent
  // once; this only keeps the other tabs' words up to date).
  const channel = window.BroadcastChannel ? new BroadcastChannel(DB_NAME) : null;
  const announce = function (message) {
    if (channel) { try { channel.postMessage(message); } catch (e) { /* closing */ } }
  };
  // the take's bytes go, its row stays, marked SENT with where its clip is
  const markSent = function (take, statusUrl) {
    return inStores("readwrite", function (s, c) {
      c.delete(chunksOf(take.id));
      return s.put({ id: take.id, campaign: take.campaign, created: take.created, state: SENT,
                     sent_at: Date.now(), status_url: statusUrl || "" });
    }).then(function () { announce({ sent: take.id, status_url: statusUrl || "" }); });
  };
  // a kept take's bytes: its chunks in order (or a version 1 row's blob)
  const bytesOf = function (take) {
    if (take.blob) { return Promise.resolve(take.blob); }
    return inStores("readonly", function (s, c) { return c.getAll(chunksOf(take.id)); }).then(function (rows) {
      return new Blob((rows || []).map(function (r) { return r.blob; }), { type: take.mime });
    });
  };
  const isQuota = function (err) {
    return err && (err.name === "QuotaExceededError" ||
                   (err.inner && err.inner.name === "QuotaExceededError"));
  };
  // where the take can be saved as a file when this device cannot keep it
  const offerDownload = function (take) {
    const link = $("record-download");
    link.href = URL.createObjectURL(take.blob);
    link.download = "take-" + new Date(take.created).toISOString().slice(0, 19).replace(/[:T]/g, "-") +
      (take.mime.indexOf("mp4") >= 0 ? ".mp4" : ".webm");
    $("record-save").hidden = false;
  };

  // --- the guide's clock ----------------------------------------------------------
  let ctx = null;
  let guide = null;   // AudioBuffer
  // Firefox with no sound output (no PulseAudio or ALSA device: measured headless, Firefox
  // ESR 153) keeps a context "suspended" for ever: resume() never settles and currentTime
  // stays 0, so the page waited without a word. After NO_OUTPUT_MS of that it says so; the
  // wait goes on (a slow start still records when the context runs).
  const NO_OUTPUT_MS = 6000;
  const NO_OUTPUT = "The guide cannot play: this browser has found no sound output (speakers or " +
    "headphones). Connect them and open this page again, or upload a video file below.";
  const context = function () {
    if (!ctx) { ctx = new AudioCtx({ latencyHint: "interactive" }); }
    if (ctx.state !== "suspended") { return Promise.resolve(ctx); }
    const silent = setTimeout(function () {
      if (ctx.state === "suspended") { say(NO_OUTPUT, true); }
    }, NO_OUTPUT_MS);
    return ctx.resume().then(function () { clearTimeout(silent); return ctx; });
  };
  const loadGuide = function () {
    if (guide) { return Promise.resolve(guide); }
    return fetch(box.dataset.guide).then(function (r) {
      if (!r.ok) { throw new Error("guide"); }
      return r.arrayBuffer();
    }).then(function (data) {
      return new Promise(function (resolve, reject) { ctx.decodeAudioData(data, resolve, reject); });
    }).then(function (buffer) { guide = buffer; return buffer; });
  };
  const outputLatency = function () {
    return (typeof ctx.outputLatency === "number" && isFinite(ctx.outputLatency)) ? ctx.outputLatency : 0;
  };
  const baseLatency = function () {
    return (typeof ctx.baseLatency === "number" && isFinite(ctx.baseLatency)) ? ctx.baseLatency : 0;
  };
  // The context time being heard at performance time ``ms``: getOutputTimestamp says which
  // context time reached the speakers when; without it, what is rendered now minus the
  // latencies the context reports.
  // Firefox's getOutputTimestamp is no device timestamp: it gives currentTime and
  // performance.now(), each less outputLatency, a pair that says the context time rendered
  // now is heard now; its shape is recognised (both exactly shifted by outputLatency, which
  // no device's timestamp is) and the output latency taken off, as without it.
  const geckoShaped = function (ts, lat) {
    return lat > 0 && Math.abs(ts.contextTime - Math.max(0, ctx.currentTime - lat)) < 1e-6 &&
      Math.abs(performance.now() - ts.performanceTime - 1000 * lat) < 2;
  };
  const heardAt = function (ms) {
    const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
    if (ts && ts.performanceTime > 0) {
      const lat = outputLatency();
      return ts.contextTime + (ms - ts.performanceTime) / 1000 - (geckoShaped(ts, lat) ? lat : 0);
    }
    return ctx.currentTime - outputLatency() - baseLatency() + (ms - performance.now()) / 1000;
  };
  // How far the context time being rendered runs ahead of the time being heard: the output
  // path's delay. Single readings of getOutputTimestamp wander by tens of ms on a busy
  // machine (measured), so a recording reads it every 100 ms and uses the median.
  // Readings from a context's first 1.5 s are left out when there are later ones: a
  // fresh context's output timestamps lag (measured: about 30 ms more, so a calibration
  // made on a fresh context was off by that much in every take).
  const aheadSampler = function () {
    const early = [];
    const settled = [];
    const read = function () {
      (ctx.currentTime < 1.5 ? early : settled).push(ctx.currentTime - heardAt(performance.now()));
    };
    read();
    const timer = setInterval(read, 100);
    const median = function () {
      const seen = settled.length >= 5 ? settled : settled.concat(early);
      const sorted = seen.slice().sort(function (a, b) { return a - b; });
      return sorted[Math.floor(sorted.length / 2)];
    };
    const stop = function () { clearInterval(timer); return median(); };
    stop.peek = median;  // the median so far, sampling goes on
    return stop;
  };
  const savedLatency = function () {
    try {
      const saved = JSON.parse(localStorage.getItem(LATENCY_KEY) || "null");
      // a delay measured by another way of reading the start (older pages: the tap) holds
      // that way's own delays: measure again
      if (saved && typeof saved.input_latency_s === "number" && (saved.clock || "tap") === CLOCK) {
        if (isFinite(saved.input_latency_s) && Math.abs(saved.input_latency_s) <= MAX_CALIBRATION) {
          return saved;
        }
        // a delay no measurement here gives (a damaged or hand-made entry): forgotten, so
        // that every take is not refused for it
        localStorage.removeItem(LATENCY_KEY);
      }
    } catch (e) { /* a damaged entry: measure again */ }
    return null;
  };
  // Without a calibration: no delay is assumed; the server checks the prediction against
  // the sound anyway, and the sound wins.
  const DEFAULT_INPUT_LATENCY = 0;

  const recorderType = function () {
    const types = ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus", "video/webm",
                   "video/mp4;codecs=avc1,mp4a.40.2", "video/mp4"];
    for (let i = 0; i < types.length; i += 1) {
      if (!MediaRecorder.isTypeSupported || MediaRecorder.isTypeSupported(types[i])) { return types[i]; }
    }
    return "";
  };

  // --- the recording's first sample on the guide's clock, to the sample ----------------
  // MediaRecorder stamps nothing the page can read, and when start() takes effect varies
  // by tens of ms (measured: the page's event loop). So the microphone also goes into the
  // AudioContext, where a worklet (static/record-tap.js) keeps its samples at their context
  // frames; the take is decoded and its first half second found among them. Where the
  // microphone is digitally silent, or the browser cannot decode its own take, the moment
  // start() returned is used instead.
  const openTap = function (mediaStream) {
    return ctx.audioWorklet.addModule(box.dataset.tap).then(function () {
      const node = new AudioWorkletNode(ctx, "record-tap", { processorOptions: { seconds: 6 } });
      ctx.createMediaStreamSource(mediaStream).connect(node);
      node.connect(ctx.destination);  // silent: it writes no output, but is pulled
      return node;
    }).catch(function () { return null; });
  };
  const grab = function (node) {
    if (!node) { return Promise.resolve(null); }
    return new Promise(function (resolve) {
      node.port.onmessage = function (e) { resolve(e.data); };
      node.port.postMessage("grab");
      setTimeout(function () { resolve(null); }, 2000);
    });
  };
  const decode = function (blob) {
    return blob.arrayBuffer().then(function (data) {
      return new Promise(function (resolve, reject) { ctx.decodeAudioData(data, resolve, reject); });
    });
  };
  // normalized correlation of a[i0 ..] with b[j0 ..] over n samples, every step-th
  const ncc = function (a, i0, b, j0, n, step) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let k = 0; k < n; k += step) {
      const x = a[i0 + k];
      const y = b[j0 + k];
      ab += x * y; aa += x * x; bb += y * y;
    }
    return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
  };
  // Where (samples) the half second of ``x`` to look for begins: past the encoder's first
  // frame (50 ms) and ``from``, at the loudest half second of the two seconds from there,
  // so a take that begins in digital silence (a loopback before its first click) is found
  // by its first sound.
  const loudest = function (x, rate, from) {
    const step = Math.round(0.05 * rate);
    const span = Math.round(0.5 * rate);
    const first = Math.max(step, from || 0);
    let best = first;
    let bestEnergy = -1;
    for (let at = first; at + span <= x.length && at <= first + 1.5 * rate; at += step) {
      let e = 0;
      for (let i = at; i < at + span; i += 4) { e += x[i] * x[i]; }
      if (e > 1.5 * bestEnergy) { bestEnergy = e; best = at; }  // the earliest, unless far louder
    }
    return best;
  };
  // The context frame at which the take's first sample entered the context, or null.
  // ``tapped``: {samples, frame} from the worklet; ``expected``: the frame start() gave;
  // ``sampleRate``: theirs (the context's unless given); ``held``: look for the take's
  // sound only where the samples hold it (below).
  const firstFrame = function (tapped, take, expected, sampleRate, held) {
    const rate = sampleRate || ctx.sampleRate;
    if (!tapped || !tapped.samples.length || take.sampleRate !== rate) { return null; }
    const x = take.getChannelData(0);
    const y = tapped.samples;
    const guess = expected - tapped.frame;    // lag of the take in the tapped samples
    const reach = Math.round(0.3 * rate);
    // where the take's sound is to be found; with ``held``, late enough that the samples
    // hold it with the whole reach before it (the tap: Firefox's hears nothing for its
    // first second, measured in ESR 153: its first frame was 1.05 s into a context the
    // calibration had just made, the recorder started at 0.035 s, so the calibration's
    // first click, 1 s in, came before anything the tap held and its start was never found
    // by the tap). Not for the track's samples, whose ``expected`` may be a second off
    // (a late capture): a later half second there could match another of the calibration's
    // evenly spaced clicks within the reach.
    const skip = loudest(x, rate, held ? reach - guess : 0);
    const n = Math.min(Math.round(0.5 * rate), x.length - skip);
    if (n < 0.1 * rate) { return null; }
    const lo = Math.max(-skip, guess - reach);
    const hi = Math.min(y.length - skip - n, guess + reach);
    let best = -1;
    let bestLag = null;
    for (let lag = lo; lag <= hi; lag += 4) {  // coarse, on every 4th sample
      const r = ncc(x, skip, y, skip + lag, n, 4);
      if (r > best) { best = r; bestLag = lag; }
    }
    if (bestLag === null) { return null; }
    for (let lag = bestLag - 4; lag <= bestLag + 4; lag += 1) {
      if (lag < lo || lag > hi) { continue; }
      const r = ncc(x, skip, y, skip + lag, n, 1);
      if (r > best) { best = r; bestLag = lag; }
    }
    return best >= 0.6 ? tapped.frame + bestLag : null;
  };
  // The guide time being heard when the take's first sample was captured.
  const anchorOf = function (tapped, blob, startedAt, startHeard, renderAhead) {
    const expected = Math.round((startHeard + renderAhead) * ctx.sampleRate);
    return decode(blob).then(function (take) {
      const frame = firstFrame(tapped, take, expected, ctx.sampleRate, true);
      return frame === null ? { heard: startHeard, stamped: false, clock: "" }
        : { heard: frame / ctx.sampleRate - renderAhead, stamped: true, frame: frame, clock: "tap" };
    }).catch(function () { return { heard: startHeard, stamped: false, clock: "" }; });
  };

  // --- better: the microphone's own capture times (Chromium's MediaStreamTrackProcessor) --
  // The tap above finds the take's first sample on the context clock to the sample, but
  // a MediaStreamAudioSourceNode delays the microphone by its own buffer, set when the
  // node starts and different for every node (measured in Chromium 156: 12.9 to 22.0 ms
  // across five nodes on one track, steady within each): the calibration measured its
  // node's, the take has another's. A MediaStreamTrackProcessor hands over the track's
  // audio as it was captured, each buffer stamped with its capture time on the page's
  // performance clock; getOutputTimestamp says which context time was heard when on that
  // clock. So: the take's first sample is found among the processor's samples (as in the
  // tap), its capture time read from the buffers' stamps, and the context time being heard
  // then from the output's stamps; each stamp is the median of its neighbours within
  // STAMP_SPAN_MS, since single stamps jitter by milliseconds and both clocks jump by
  // whole buffers when the audio thread glitches (measured: 10-20 ms steps, the same in
  // both). Measured on a loopback: the same delay within 0.1 ms from one processor to
  // the next, where the tap's nodes spread over 9 ms (bench/README.md, "Record along").
  const TRACK_KEEP_S = 8;      // seconds of the microphone's samples kept from the start
  const STAMP_SPAN_MS = 300;
  const trackClockAvailable = !!(window.MediaStreamTrackProcessor && window.AudioData &&
                                 window.OfflineAudioContext && AudioCtx.prototype.getOutputTimestamp);
  const CLOCK = trackClockAvailable ? "track" : "tap";
  const medianOf = function (values) {
    if (!values.length) { return null; }
    const sorted = values.slice().sort(function (a, b) { return a - b; });
    return sorted[Math.floor(sorted.length / 2)];
  };
  // What is near ``at`` in ``rows`` ([time, value] pairs): the values within
  // STAMP_SPAN_MS, else the nearest few.
  const near = function (rows, at) {
    const close = rows.filter(function (r) { return Math.abs(r[0] - at) <= STAMP_SPAN_MS; });
    if (close.length >= 3) { return close.map(function (r) { return r[1]; }); }
    return rows.slice().sort(function (a, b) { return Math.abs(a[0] - at) - Math.abs(b[0] - at); })
      .slice(0, 5).map(function (r) { return r[1]; });
  };
  // Opens the clock on ``mediaStream``'s microphone (a clone of its track, stopped by
  // ``stop()``), or returns null where the browser has no processor. ``anchor(blob,
  // startedAt)`` resolves to {heard, stamped, clock: "track", captured_ms} like anchorOf's.
  const trackClock = function (mediaStream) {
    const audio = trackClockAvailable && mediaStream.getAudioTracks()[0];
    if (!audio) { return null; }
    let track = null;
    let reader = null;
    try {
      track = audio.clone();
      reader = new MediaStreamTrackProcessor({ track: track, maxBufferSize: 300 }).readable.getReader();
    } catch (e) {
      if (track) { track.stop(); }
      return null;
    }
    let rate = 0;
    let position = 0;            // samples of the track read so far
    const kept = [];             // the first TRACK_KEEP_S seconds of samples
    let keptLength = 0;
    const captured = [];         // [capture time (perf ms), capture time less position (ms)]
    const heard = [];            // [perf ms, perf ms less context ms]: heard when
    let going = true;
    const readHeard = function () {
      const ts = ctx.getOutputTimestamp();
      if (ts && ts.performanceTime > 0) { heard.push([ts.performanceTime, ts.performanceTime - 1000 * ts.contextTime]); }
    };
    readHeard();
    const heardTimer = setInterval(readHeard, 20);
    const pump = function () {
      reader.read().then(function (got) {
        const data = got.value;
        if (got.done || !data) { return; }
        if (!going) { data.close(); return; }
        rate = data.sampleRate;
        const n = data.numberOfFrames;
        const at = data.timestamp / 1000;
        captured.push([at, at - (1000 * position) / rate]);
        if (keptLength < TRACK_KEEP_S * rate) {
          const x = new Float32Array(n);
          data.copyTo(x, { planeIndex: 0, format: "f32-planar" });
          kept.push(x);
          keptLength += n;
        }
        position += n;
        data.close();
        pump();
      }).catch(function () { /* the track ended */ });
    };
    pump();
    const stop = function () {
      if (!going) { return; }
      going = false;
      clearInterval(heardTimer);
      reader.cancel().catch(function () {});
      track.stop();
    };
    const decodeAt = function (blob) {  // the take decoded at the track's own rate
      return blob.arrayBuffer().then(function (data) {
        return new OfflineAudioContext(1, 1, rate).decodeAudioData(data);
      });
    };
    const anchor = function (blob, startedAt) {
      const none = { heard: null, stamped: false, clock: "track" };
      if (!rate || !captured.length || heard.length < 3) { return Promise.resolve(none); }
      return decodeAt(blob).then(function (take) {
        const y = new Float32Array(keptLength);
        let o = 0;
        kept.forEach(function (x) { y.set(x, o); o += x.length; });
        // where the take's first sample is expected among the kept ones: when start() returned
        const expected = Math.round(((startedAt - captured[0][0]) / 1000) * rate);
        // a capture that starts late (Chromium on PulseAudio: its first samples 0.6-1.2 s
        // after start() returned, the recording's sound starting as late) has the take's
        // first sample at the processor's first one, not where start() returned
        let first = firstFrame({ samples: y, frame: 0 }, take, expected, rate);
        if (first === null && Math.abs(expected) > 0.3 * rate) {
          first = firstFrame({ samples: y, frame: 0 }, take, 0, rate);
        }
        if (first === null) { return none; }
        // its capture time on the performance clock, then the context time heard then
        const capturedAt = medianOf(near(captured, captured[0][0] + (1000 * first) / rate)) + (1000 * first) / rate;
        const heardAt = capturedAt - medianOf(near(heard, capturedAt));
        return { heard: heardAt / 1000, stamped: true, clock: "track", captured_ms: capturedAt };
      }).catch(function () { return none; });
    };
    return { stop: stop, anchor: anchor };
  };

  const cameraProblem = function (err) {
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError") {
      return "The camera and microphone were not allowed. Allow them for this site in your " +
             "browser's settings (the camera icon next to the address) and press Record again, " +
             "or film yourself with your camera app and upload the file below.";
    }
    if (name === "NotFoundError" || name === "OverconstrainedError" || name === "NotReadableError") {
      return "No camera or microphone could be used on this device (none found, or another " +
             "app is using it). Connect or free one and press Record again, or upload a file below.";
    }
    return "Recording could not start on this browser. Upload a video file below instead.";
  };

  // --- recording --------------------------------------------------------------------
  let stream = null;
  let recorder = null;
  let source = null;     // the guide playing
  let current = null;    // the take under review: {id, blob, mime, timing, ...}
  let recording = null;  // the take being recorded (its row, kept as it goes)
  let levelTimer = 0;

  const stopCamera = function () {
    if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); }
    stream = null;
    preview.srcObject = null;
    if (levelTimer) { cancelAnimationFrame(levelTimer); levelTimer = 0; }
    meter.value = 0;
  };
  const watchLevel = function () {
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    const tick = function () {
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (let i = 0; i < data.length; i += 1) { sum += data[i] * data[i]; }
      // dBFS from -60 to 0 on the meter
      const db = 10 * Math.log10(sum / data.length + 1e-12);
      meter.value = Math.max(0, Math.min(1, (db + 60) / 60));
      levelTimer = requestAnimationFrame(tick);
    };
    tick();
  };

  // ``previous``: the take this one is to replace ("Record again"). It is kept until the new
  // take holds singing of its own (a chunk kept past the count-in), so a camera that
  // cannot start, or a take stopped at once, loses nothing: the previous take is offered
  // again.
  let starting = false;   // a recording is being set up: a second Record is ignored
  let replacing = null;   // the take the one being recorded will replace, while it may
  const retire = function () {
    const old = replacing;
    replacing = null;
    if (old) { forget(old.id).catch(function () {}); }
  };
  const offerPrevious = function (text) {
    const old = replacing;
    replacing = null;
    if (!old) { return false; }
    offer(old, text + " Your previous take is still here: Send it, play it back, or Record again.", true);
    return true;
  };
  // a take's id: it travels as ``take_id`` and, with the take's bytes, makes the server
  // answer every upload of one take with its one clip; 128 random bits
  const newTakeId = function () {
    const bits = crypto.getRandomValues(new Uint8Array(16));
    return "take-" + Date.now().toString(36) + "-" + Array.prototype.map.call(bits, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  };
  const startRecording = function (previous) {
    if (starting || (recorder && recorder.state !== "inactive")) { return; }
    starting = true;
    replacing = previous || null;
    show([]);
    say("Getting the camera, the microphone and the guide ready…", false);
    let mime = "";
    let clock = null;  // the microphone's capture times, where the browser has them
    context().then(function () {
      return Promise.all([
        loadGuide(),
        navigator.mediaDevices.getUserMedia({
          video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } },
          // the take's own sound: nothing that moves it in time or pumps its level
          audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        }),
      ]);
    }).then(function (got) {
      stream = got[1];
      clock = trackClock(stream);
      return openTap(stream);
    }).then(function (tap) {
      preview.srcObject = stream;
      preview.play().catch(function () {});
      watchLevel();
      mime = recorderType();
      recorder = new MediaRecorder(stream, mime ? { mimeType: mime } : undefined);
      mime = recorder.mimeType || mime || "video/webm";
      const chunks = [];
      const latency = savedLatency();
      const inputLatency = latency ? latency.input_latency_s : DEFAULT_INPUT_LATENCY;
      let startedAt = 0;   // performance time of the recording's first sample
      let guideAt = 0;     // the context time the guide's t=0 is scheduled at
      let tapped = null;   // the microphone's samples around the start, once grabbed
      const timingOf = function (heard, stamped, how) {
        // the guide time heard when the take's first sample was captured, less the time
        // the microphone path takes to deliver a sound into the take
        return {
          start_clock: stamped ? how : "",
          record_start_s: (heard - guideAt - inputLatency).toFixed(6),
          output_latency_s: outputLatency().toFixed(6), base_latency_s: baseLatency().toFixed(6),
          input_latency_s: inputLatency.toFixed(6), latency_calibrated: latency ? "yes" : "",
          recorder_mime: mime, start_stamped: stamped ? "yes" : "",
        };
      };
      // the take is kept from its first chunk on: its row now, each chunk as it arrives
      const take = {
        id: newTakeId(),
        campaign: campaign, mime: mime, seconds: 0, created: Date.now(), state: "recording",
        fields: fieldsOf(),  // and what the form holds, as it changes (keepFields)
      };
      let saving = null;       // the chain of writes, in the chunks' order
      let unkept = null;       // why a write failed: the take then lives on this page only
      let seq = 0;
      const write = function (work) {
        saving = saving.then(function () { return unkept ? null : work(); })
          .catch(function (err) { unkept = unkept || err || new Error("unkept"); });
        return saving;
      };
      recorder.ondataavailable = function (e) {
        if (!e.data || !e.data.size) { return; }
        chunks.push(e.data);
        const n = seq;
        seq += 1;
        write(function () {
          return keepChunk(take.id, n, e.data).then(function () {
            // past the count-in and kept: the take replaces the previous one now
            if (!unkept && (n + 1) * CHUNK_MS >= (COUNT_IN + MIN_SUNG) * 1000 && recording === take) { retire(); }
          });
        });
        if (!early && seq >= EARLY_CHUNKS && tapped) { early = anchorEarly(new Blob(chunks, { type: mime })); }
      };
      // The take's first sample found on the guide's clock from its first seconds, while it
      // records, and kept with the take: a take cut off later keeps a found start too.
      let early = null;  // that anchor (a promise of it: tried once)
      // the take's start from ``blob`` (all of it, or its first chunks): by the capture
      // times where the browser has them, else by the tap
      const startOf = function (blob, samples, ahead) {
        const byTap = function () { return anchorOf(samples, blob, startedAt, renderedAt - ahead, ahead); };
        if (!clock) { return byTap(); }
        return clock.anchor(blob, startedAt).then(function (found) { return found.stamped ? found : byTap(); });
      };
      const anchorEarly = function (partial) {
        const ahead = aheadMedian.peek();
        return tapped.then(function (samples) {
          return startOf(partial, samples, ahead);
        }).then(function (anchor) {
          if (!anchor.stamped) { return null; }
          if (take.state === "recording") {
            take.timing = timingOf(anchor.heard, true, anchor.clock);
            write(function () { return keep(take); });
          }
          return anchor;
        }).catch(function () { return null; });
      };
      recorder.onerror = function () {
        say("The recording broke off. What was recorded is kept: review it below.", true);
      };
      recorder.onstop = function () {
        if (source) { try { source.stop(); } catch (e) { /* ended already */ } }
        source = null;
        const blob = new Blob(chunks, { type: mime });
        const seconds = (performance.now() - startedAt) / 1000;
        const renderAhead = aheadMedian();
        const startHeard = renderedAt - renderAhead;
        let earlyAnchor = null;
        Promise.resolve(early).then(function (a) { earlyAnchor = a; return tapped || grab(tap); })
          .then(function (samples) {
            if (tap) { tap.disconnect(); }
            if (clock) { clock.stop(); }  // what it holds is enough: the start is in it
            stopCamera();
            return startOf(blob, samples, renderAhead);
          }).then(function (found) {
          const anchor = found.stamped || !earlyAnchor ? found : earlyAnchor;
          const heard = anchor.stamped ? anchor.heard : startHeard;
          finished(Object.assign(take, {
            blob: blob, seconds: seconds, state: "recorded",
            timing: timingOf(heard, anchor.stamped, anchor.clock),
            // how the start was found, for a developer reading the row (the tests print it)
            clock: { how: anchor.clock, render_ahead_s: renderAhead, first_frame: anchor.frame,
                     captured_ms: anchor.captured_ms,
                     output_latency_s: outputLatency(), base_latency_s: baseLatency() },
          }), saving, function () { return unkept; });
        });
      };
      // the recording's start on the guide's clock: the moment start() returns, read on
      // the context clock at once (the recorder's own "start" event comes later, by as
      // much as the page's event loop is late: tens of ms under load, measured)
      recorder.start(CHUNK_MS);
      startedAt = performance.now();
      const renderedAt = ctx.currentTime - (performance.now() - startedAt) / 1000;
      const aheadMedian = aheadSampler();
      guideAt = ctx.currentTime + COUNT_IN;
      // a take cut off (tab closed, browser crashed) keeps this timing: the moment start()
      // returned, with the output delay read once
      take.timing = timingOf(renderedAt - (ctx.currentTime - heardAt(performance.now())), false, "");
      saving = keep(take).catch(function (err) { unkept = err || new Error("unkept"); });
      recording = take;
      setTimeout(function () { if (recorder.state === "recording") { tapped = grab(tap); } }, 2500);
      for (let beat = 0; beat < COUNT_IN; beat += 1) { tick(guideAt - COUNT_IN + beat, beat === 0); }
      source = ctx.createBufferSource();
      source.buffer = guide;
      source.connect(ctx.destination);
      // this take's recorder, not whichever is recording half a second later: stopping the
      // guide by hand ends it too, and "Record again" may have started another by then
      const mine = recorder;
      source.onended = function () {
        setTimeout(function () { if (mine.state === "recording") { mine.stop(); } }, TAIL * 1000);
      };
      source.start(guideAt);
      countDown(guideAt);
      starting = false;
      show(["stop"]);
      say("Recording. Sing along with the guide; press Stop when you are done.", false);
      buttons.stop.focus();
    }).catch(function (err) {
      starting = false;
      if (clock) { clock.stop(); }
      stopCamera();
      let text = cameraProblem(err);
      if (err && err.message === "guide") {
        text = "The guide could not be loaded. Check your connection and press Record again.";
      } else if (err && err.name === "EncodingError") {
        text = "This browser cannot play the guide's sound. Upload a video file below instead.";
      }
      if (offerPrevious(text)) { return; }
      show(["record", "calibrate"]);
      say(text, true);
      buttons.record.focus();
    });
  };
  const tick = function (when, first) {  // a short click of the count-in
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = first ? 1320 : 880;
    gain.gain.setValueAtTime(0.3, when);
    gain.gain.exponentialRampToValueAtTime(0.001, when + 0.08);
    osc.connect(gain).connect(ctx.destination);
    osc.start(when);
    osc.stop(when + 0.1);
  };
  const countDown = function (guideAt) {
    const step = function () {
      const left = guideAt - ctx.currentTime;
      if (left > 0 && recorder && recorder.state === "recording") {
        countLabel.textContent = String(Math.ceil(left));
        setTimeout(step, 50);
      } else {
        countLabel.textContent = "";
      }
    };
    step();
  };

  const NO_ROOM = "This device has no room left to keep the take, so it is only on this page: " +
    "press Send now and keep this tab open until it says Sent, or save it as a file (the link below).";
  const NOT_KEPT = "The take could not be kept on this device; it is only on this page: press Send " +
    "now and keep this tab open until it says Sent, or save it as a file (the link below).";
  // Offer ``take`` (with its bytes in ``take.blob``) for review. ``saved``: the chunks'
  // writes, still settling; ``unkept()``: why one failed, if it did.
  // the buttons a take under review is offered with: one stopped during the count-in holds
  // no singing and is not sent
  const reviewButtons = function (take) {
    return take.countInOnly ? ["retake", "play", "discard"] : ["send", "retake", "play", "discard"];
  };
  const offer = function (take, text, isError) {
    current = take;
    $("record-sent").hidden = true;
    if (recording === take) { recording = null; }
    review.src = URL.createObjectURL(take.blob);
    review.hidden = false;
    show(reviewButtons(take));
    say(text, isError);
  };
  const COUNT_IN_ONLY = "This take was stopped during the count-in, before the guide began, so " +
    "it holds no singing and cannot be sent. Press Record again, or Discard it.";
  const finished = function (take, saved, unkept) {
    if (recording === take) { recording = null; }
    if (take.seconds < MIN_TAKE) {
      // nothing in it (no chunk was even kept): not offered, and a take it was to replace
      // comes back
      forget(take.id).catch(function () {});
      const text = "The recording stopped after less than a second, so there is no take.";
      if (offerPrevious(text)) { buttons.retake.focus(); return; }
      show(["record", "calibrate"]);
      say(text + " Press Record to try again.", true);
      buttons.record.focus();
      return;
    }
    take.countInOnly = take.seconds < COUNT_IN + MIN_SUNG;
    if (take.countInOnly && offerPrevious("That take was stopped during the count-in, before " +
                                          "the guide began, so it holds no singing and is not kept.")) {
      forget(take.id).catch(function () {});
      buttons.retake.focus();
      return;
    }
    retire();  // a take with singing in it, or the only one: the previous one goes now
    const short = take.seconds < SHORT;
    const kept = take.countInOnly ? COUNT_IN_ONLY : short ? "This take is only " +
      Math.round(take.seconds) + " s long. Record again, or send it if that is what you meant."
      : "Listen to your take, then press Send, or Record again.";
    offer(take, kept, short || take.countInOnly);
    (take.countInOnly ? buttons.retake : buttons.send).focus();
    Promise.resolve(saved).then(function () {
      const failed = unkept && unkept();
      if (failed) { throw failed; }
      return keep(take);
    }).then(function () {
      if (current === take && !take.countInOnly) { say(kept + " It is kept on this device until it is sent.", short); }
    }).catch(function (err) {
      take.pageOnly = true;
      offerDownload(take);
      if (current === take) { say(isQuota(err) ? NO_ROOM : NOT_KEPT, true); }
    });
  };

  // --- review: the take against the guide --------------------------------------------
  const playBack = function () {
    if (!current) { return; }
    context().then(loadGuide).then(function () {
      const start = parseFloat(current.timing.record_start_s) || 0;
      review.currentTime = 0;
      const go = function () {
        const at = ctx.currentTime + 0.05;
        const back = ctx.createBufferSource();
        back.buffer = guide;
        const soft = ctx.createGain();
        soft.gain.value = 0.5;
        back.connect(soft).connect(ctx.destination);
        // the guide time heard at the take's first sample is ``start``
        if (start >= 0) { back.start(at, start); } else { back.start(at - start); }
        review.addEventListener("pause", function () { try { back.stop(); } catch (e) { /* done */ } }, { once: true });
      };
      review.addEventListener("playing", go, { once: true });
      review.play().catch(function () {});
    });
  };

  // --- sending ------------------------------------------------------------------------
  const fieldsOf = function () {
    const data = new FormData(form);
    return {
      name: (data.get("name") || "").trim(), part: data.get("part") || "",
      location: data.get("location") || "", consent: data.get("consent") ? "yes" : "",
    };
  };
  const formProblem = function (fields) {
    if (!fields.name) { return "Write your name for the credits below, then press Send."; }
    if (form.querySelector("select[name=part]") && !fields.part) { return "Choose your part below, then press Send."; }
    if (!fields.consent) { return "Tick the licence box below, then press Send."; }
    return null;
  };
  // What the participant types is kept with the take (being recorded, or recorded and
  // not sent), so a take offered again on a later visit, after a closed tab or a crash,
  // comes back with its name, part, location and consent, not asked again.
  const keepFields = function () {
    const take = recording || current;
    if (!take || (take.state !== "recording" && take.state !== "recorded") || take.pageOnly) { return; }
    take.fields = fieldsOf();
    keep(take).catch(function () { /* the form still holds them */ });
  };
  form.addEventListener("input", keepFields);
  form.addEventListener("change", keepFields);
  // A kept take's fields back in the form (a name or place typed since is left alone).
  const putFields = function (fields) {
    if (!fields) { return; }
    const el = function (name) { return form.elements.namedItem(name); };
    ["name", "location"].forEach(function (name) {
      if (el(name) && fields[name] && !el(name).value.trim()) { el(name).value = fields[name]; }
    });
    if (el("part") && fields.part) { el("part").value = fields.part; }
    if (el("consent") && fields.consent) { el("consent").checked = true; }
  };
  const percent = function (part, whole) { return whole ? Math.floor((100 * part) / whole) : 0; };

  // What makes a resume safe, as upload.js: the same take (its id), the same bytes
  // (SHA-256 of the first and last megabyte, and the size: a take put together again
  // from its chunks after a reload is byte for byte the one that was being sent) and the
  // same submission (the form's fields). The server checks the ends against the bytes it
  // holds (head_sha256 / tail_sha256), so a resume can only ever continue this take.
  const ENDS = 1024 * 1024;
  const hex = function (buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  };
  const sha256 = function (data) { return crypto.subtle.digest("SHA-256", data).then(hex); };
  const fingerprintOf = function (take, meta) {
    const blob = take.blob;
    const span = Math.min(ENDS, blob.size);
    return Promise.all([
      blob.slice(0, span).arrayBuffer().then(sha256),
      blob.slice(blob.size - span).arrayBuffer().then(sha256),
      sha256(new TextEncoder().encode(JSON.stringify(meta))),
    ]).then(function (h) {
      return { head: h[0], tail: h[1],
               key: ["tutti-take", campaign, take.id, blob.size, h[0], h[1], h[2]].join(":") };
    });
  };

  // The timing as the server takes it: a calibration beyond what a measurement here gives
  // (a damaged stored entry, red team F7) is taken out of the start, which then counts as
  // uncalibrated; a timing that is still not usable is not sent (the sound decides alone).
  const PLAIN = /^-?[0-9]{1,12}(\.[0-9]{1,12})?$/;
  const usableTiming = function (timing) {
    if (!timing) { return null; }
    const num = function (key) {
      const raw = String(timing[key] === undefined ? "0" : timing[key]);
      return PLAIN.test(raw) ? parseFloat(raw) : NaN;
    };
    const out = Object.assign({}, timing);
    let start = num("record_start_s");
    const input = num("input_latency_s");
    if (isFinite(start) && !(Math.abs(input) <= MAX_CALIBRATION)) {
      if (isFinite(input) && Math.abs(input) < 3600) { start += input; }
      out.record_start_s = start.toFixed(6);
      out.input_latency_s = (0).toFixed(6);
      out.latency_calibrated = "";
    }
    const inRange = function (key, lo) { const v = num(key); return v >= lo && v <= MAX_LATENCY; };
    if (!(Math.abs(start) <= 3600) || !inRange("output_latency_s", 0) || !inRange("base_latency_s", 0)) {
      return null;
    }
    return out;
  };
  const TIMING_KEYS = ["record_start_s", "output_latency_s", "input_latency_s", "base_latency_s",
                       "latency_calibrated", "recorder_mime", "start_stamped", "start_clock"];
  // Upload ``take``; ``done()`` once it is sent or has failed (the tab then lets go of
  // the take's lock: see sendOnce).
  const send = function (take, done) {
    show([]);
    bar.hidden = false;
    bar.removeAttribute("value");
    say("Sending your take…", false);
    const ext = take.mime.indexOf("mp4") >= 0 ? "mp4" : "webm";
    const meta = Object.assign({
      campaign: campaign, filename: "take." + ext, name: take.fields.name, part: take.fields.part,
      location: take.fields.location, consent: take.fields.consent,
    }, take.untimed ? null : usableTiming(take.timing));
    fingerprintOf(take, meta).then(function (print) {
      meta.head_sha256 = print.head;
      meta.tail_sha256 = print.tail;
      // the server answers every upload of this take (this take id, these bytes) with
      // its one clip, whichever tab or visit sends it
      meta.take_id = take.id;
      startUpload(take, meta, print.key, done);
    }).catch(function () {
      show(["send", "retake", "play", "discard"]);
      say("The take could not be read back on this device. Save it as a file (the link " +
          "below) and upload it with the form below.", true);
      offerDownload(take);
      done();
    });
  };
  let sendingTake = null;  // the take being sent, for the connection's word
  const OFFLINE = "The connection is gone. Your take is kept on this device; sending goes on " +
    "by itself when the connection is back (or when you open this page again).";
  window.addEventListener("offline", function () { if (sendingTake) { say(OFFLINE, true); } });
  window.addEventListener("online", function () {
    if (sendingTake) { say("The connection is back; sending goes on…", false); }
  });
  const startUpload = function (take, meta, key, done) {
    sendingTake = take;
    const upload = new tus.Upload(take.blob, {
      endpoint: new URL(box.dataset.uploads, window.location.href).toString(),
      chunkSize: CHUNK,
      retryDelays: [1000, 2000, 4000, 8000, 15000, 30000, 30000, 30000, 30000, 30000],
      metadata: meta,
      fingerprint: function () { return Promise.resolve(key); },
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onProgress: function (sent, total) {
        bar.value = percent(sent, total);
        if (navigator.onLine === false) { say(OFFLINE, true); return; }
        say("Sending… " + bar.value + "%. " + (take.pageOnly
          ? "Keep this page open until it says Sent."
          : "You may close this page: the take is kept and sending goes on when you open it again."), false);
      },
      onSuccess: function (payload) {
        const answer = payload && payload.lastResponse;
        const statusUrl = answer && answer.getHeader("Tutti-Status-Url");
        const where = statusUrl ? new URL(statusUrl, upload.url).toString() : "";
        sendingTake = null;
        bar.value = 100;
        markSent(take, where).catch(function () {}).then(function () {
          done();
          say("Sent. Opening your private status page…", false);
          if (where) { window.location.assign(where); }
        });
      },
      onError: function (err) {
        sendingTake = null;
        const status = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
        let text = "The connection keeps dropping. Your take is kept on this device: press " +
                   "Send again when the connection is better.";
        if (status >= 400 && status < 500) {
          try {
            text = JSON.parse(err.originalResponse.getBody()).error || text;
          } catch (e) { text = "The take was refused. Check the form below and press Send again."; }
          // the server would not take the page's timing: send the take without it (the
          // sound syncs it alone) rather than leave it unsendable
          if (!take.untimed && TIMING_KEYS.some(function (k) { return text.indexOf("Upload-Metadata: " + k) >= 0; })) {
            take.untimed = true;
            keep(take).catch(function () {});
            send(take, done);
            return;
          }
        }
        done();
        show(reviewButtons(take));
        say(text, true);
        buttons.send.focus();
      },
    });
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length) { upload.resumeFromPreviousUpload(previous[0]); }
      upload.start();
    });
  };
  // A kept take is sent once however many tabs of this browser offer it (red team W1):
  // Send holds a Web Lock named after the take for the whole upload, and under it marks
  // the take's row "sending", unless the row says it was sent meanwhile (then this tab
  // says so and sends nothing). A tab whose Send finds the lock held says the take is
  // being sent from another tab, and waits: if that tab sends it, this one says so; if
  // it fails or is closed, this one sends it (the upload resumes from the server's
  // offset). Without Web Locks the SENT mark still stops a second Send once the first is
  // done, and the server answers two uploads of one take with its one clip.
  const SENT_ELSEWHERE = "This take was sent from another tab of this browser, so it is not " +
    "sent again.";
  const SENDING_ELSEWHERE = "This take is being sent from another tab of this browser. It is " +
    "sent once, from there; this page says so here when it has arrived.";
  const sentElsewhere = function (take, row) {
    if (take.elsewhere) { return; }
    take.elsewhere = true;
    if (current !== take) { return; }  // the page has moved on to another take
    current = null;
    review.hidden = true;
    bar.hidden = true;
    $("record-save").hidden = true;
    const where = row && row.status_url;
    if (where) { $("record-sent-link").href = where; }
    $("record-sent").hidden = !where;
    show(["record", "calibrate"]);
    const text = SENT_ELSEWHERE + (where ? " Its private status page is linked below." : "");
    say(text, false);
    buttons.record.focus();
    offerKept(text + " ");  // another kept take, if there is one
  };
  if (channel) {
    channel.onmessage = function (e) {
      const message = e.data || {};
      if (message.sent && current && current.id === message.sent && sendingTake !== current) {
        sentElsewhere(current, message);
      }
    };
  }
  // the take's row marked "sending", as it was before: SENT means another tab sent it
  const claim = function (take) {
    take.state = "sending";
    return keep(take).catch(function () { return null; });  // kept on the page: it goes on
  };
  const LOCKS = navigator.locks && typeof navigator.locks.request === "function" ? navigator.locks : null;
  const sendOnce = function (take) {
    const attempt = function () {
      return claim(take).then(function (before) {
        if (before && before.state === SENT) { sentElsewhere(take, before); return null; }
        if (take.elsewhere) { return null; }
        return new Promise(function (resolve) { send(take, resolve); });
      });
    };
    if (!LOCKS) { return attempt(); }
    const name = "tutti-take:" + take.id;
    let elsewhere = false;
    return LOCKS.request(name, { ifAvailable: true }, function (lock) {
      if (!lock) { elsewhere = true; return null; }
      return attempt();
    }).then(function () {
      if (!elsewhere) { return null; }
      show([]);
      say(SENDING_ELSEWHERE, false);
      return LOCKS.request(name, attempt);
    }, function () { return attempt(); });  // locks refused here (an opaque origin)
  };
  const sendCurrent = function () {
    if (!current) { return; }
    const fields = fieldsOf();  // a kept take's own were put back in the form (putFields)
    const problem = formProblem(fields);
    if (problem) { say(problem, true); return; }
    current.fields = fields;
    sendOnce(current);
  };

  // --- calibration: the whole path's delay, once per device --------------------------
  // Clicks play at known context times while the microphone records through MediaRecorder,
  // the same path as a take. The recording is decoded and its onsets found: where a click
  // lands in the recording, against where the guide's clock put it, is the delay from the
  // output (speakers or headphones, heard by the microphone or clapped along with) through
  // the capture and the recorder's start. It may be negative: a recorder's first sample can
  // predate the moment it was asked to start.
  const CLICKS = 8;
  const CLICK_GAP = 0.6;
  // A click counts as heard only where the recording rises well above its own noise floor
  // (CLICK_OVER_FLOOR: 12 dB over the median 10-ms level) and the clicks' delays agree
  // with each other (CLICK_SPREAD): room noise or music alone gave "8 of 8 heard" and a
  // random delay before (red team F8).
  const CLICK_OVER_FLOOR = 4;
  const CLICK_SPREAD = 0.02;
  const onsetsOf = function (buffer) {  // seconds of sharp rises in a decoded recording
    const x = buffer.getChannelData(0);
    const rate = buffer.sampleRate;
    let peak = 0;
    for (let i = 0; i < x.length; i += 1) { peak = Math.max(peak, Math.abs(x[i])); }
    const found = [];
    if (peak < 0.01) { return found; }
    // the noise floor: the median RMS of 10-ms windows (the clicks fill few of them)
    const win = Math.max(1, Math.round(0.01 * rate));
    const levels = [];
    for (let at = 0; at + win <= x.length; at += win) {
      let e = 0;
      for (let i = at; i < at + win; i += 1) { e += x[i] * x[i]; }
      levels.push(Math.sqrt(e / win));
    }
    const floor = medianOf(levels) || 0;
    const level = Math.max(0.2 * peak, CLICK_OVER_FLOOR * 1.41 * floor);
    let quietUntil = 0;
    for (let i = 0; i < x.length; i += 1) {
      if (i >= quietUntil && Math.abs(x[i]) > level) {
        found.push(i / rate);
        quietUntil = i + Math.round(0.25 * rate);
      }
    }
    return found;
  };
  const calibrate = function () {
    show([]);
    say("Measuring your delay: take the headphones off and turn the sound up so the " +
        "microphone hears the " + CLICKS + " clicks, or keep them on and clap along with them.", false);
    let micStream = null;
    let startedAt = 0;
    let startHeard = null;
    let renderAhead = 0;
    let finishAhead = null;
    let tap = null;
    let tapped = null;
    let recorded = null;
    let clock = null;
    const clicks = [];
    context().then(function () {
      return navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    }).then(function (got) {
      micStream = got;
      clock = trackClock(micStream);
      return openTap(micStream);
    }).then(function (node) {
      tap = node;
      const types = ["audio/webm;codecs=opus", "audio/webm", "audio/mp4", ""];
      const type = types.filter(function (t) { return !t || !MediaRecorder.isTypeSupported || MediaRecorder.isTypeSupported(t); })[0];
      const rec = new MediaRecorder(micStream, type ? { mimeType: type } : undefined);
      const chunks = [];
      rec.ondataavailable = function (e) { if (e.data && e.data.size) { chunks.push(e.data); } };
      const stopped = new Promise(function (resolve) {
        rec.onstop = function () { resolve(new Blob(chunks, { type: rec.mimeType || type })); };
      });
      rec.start();
      startedAt = performance.now();
      const renderedAt = ctx.currentTime;
      const aheadMedian = aheadSampler();
      finishAhead = function () {
        renderAhead = aheadMedian();
        startHeard = renderedAt - renderAhead;
      };
      // the tap's samples taken 4 s in (its ring holds 6 s, so all since it began): a tap
      // that hears nothing for its first second or two (Firefox) then still holds clicks
      // to find the recording by (at 2.5 s it held as little as half a second)
      setTimeout(function () { tapped = grab(tap); }, 4000);
      const first = ctx.currentTime + 1.0;
      for (let i = 0; i < CLICKS; i += 1) { clicks.push(first + CLICK_GAP * i); tick(first + CLICK_GAP * i, false); }
      setTimeout(function () { rec.stop(); },
                 (first - ctx.currentTime + CLICK_GAP * CLICKS + 0.5) * 1000);
      return stopped;
    }).then(function (blob) {
      recorded = blob;
      finishAhead();
      return tapped || grab(tap);
    }).then(function (samples) {
      micStream.getTracks().forEach(function (t) { t.stop(); });
      micStream = null;
      if (tap) { tap.disconnect(); }
      if (clock) { clock.stop(); }
      // the start read the way a take's will be (the capture times, else the tap)
      const byTap = function () { return anchorOf(samples, recorded, startedAt, startHeard, renderAhead); };
      const anchor = clock ? clock.anchor(recorded, startedAt).then(function (found) {
        return found.stamped ? found : byTap();
      }) : byTap();
      return Promise.all([anchor, decode(recorded)]);
    }).then(function (got) {
      const heard = got[0].heard;
      const how = got[0].stamped ? got[0].clock : "start";
      const buffer = got[1];
      const onsets = onsetsOf(buffer);
      const delays = [];
      clicks.forEach(function (c) {
        const at = c - heard;  // where the click would be in the recording with no delay
        const near = onsets.filter(function (o) { return o - at > -0.2 && o - at < 0.5; });
        if (near.length) { delays.push(near[0] - at); }
      });
      show(["record", "calibrate"]);
      buttons.calibrate.focus();
      // heard: the clicks whose delays agree with the median's within CLICK_SPREAD (a click
      // heard lands at the same delay each time; noise lands anywhere)
      const middle = medianOf(delays);
      const agreeing = delays.filter(function (d) { return Math.abs(d - middle) <= CLICK_SPREAD; });
      if (agreeing.length < Math.ceil(CLICKS * 0.6)) {
        say("The microphone did not hear the clicks clearly above the room's sound (" +
            agreeing.length + " of " + CLICKS + " heard at a steady delay), so no delay is " +
            "stored. Turn the sound up, or clap along more loudly, in a quieter room, and " +
            "measure again.", true);
        return;
      }
      agreeing.sort(function (a, b) { return a - b; });
      const median = agreeing[Math.floor(agreeing.length / 2)];
      if (Math.abs(median) > MAX_CALIBRATION) {
        say("The measured delay is not plausible; nothing is stored. Measure again.", true);
        return;
      }
      localStorage.setItem(LATENCY_KEY, JSON.stringify({
        input_latency_s: median, clicks_heard: agreeing.length, measured_at: new Date().toISOString(),
        clock: how,
        render_ahead_s: renderAhead, output_latency_s: outputLatency(), base_latency_s: baseLatency(),
      }));
      const ms = Math.round(median * 1000);
      say("Measured (" + agreeing.length + " of " + CLICKS + " clicks heard): your recordings run " +
          Math.abs(ms) + " ms " + (ms < 0 ? "ahead of" : "behind") + " the guide on this device. " +
          "This is remembered here and corrected in every take.", false);
    }).catch(function (err) {
      if (micStream) { micStream.getTracks().forEach(function (t) { t.stop(); }); }
      if (clock) { clock.stop(); }
      show(["record", "calibrate"]);
      say(err && err.name === "EncodingError"
        ? "This browser cannot read back its own recording, so the delay is not measured; " +
          "takes are synced from their sound." : cameraProblem(err), true);
    });
  };

  // --- buttons, and takes kept from before --------------------------------------------
  buttons.record.addEventListener("click", function () {
    if (current) { review.hidden = true; current = null; }
    $("record-sent").hidden = true;
    startRecording();
  });
  buttons.stop.addEventListener("click", function () {
    if (recorder && recorder.state !== "inactive") { recorder.stop(); }
  });
  buttons.retake.addEventListener("click", function () {
    // the take under review is kept until the new one holds singing (startRecording)
    const old = current;
    current = null;
    review.hidden = true;
    startRecording(old);
  });
  buttons.play.addEventListener("click", playBack);
  buttons.send.addEventListener("click", sendCurrent);
  if (buttons.calibrate) { buttons.calibrate.addEventListener("click", calibrate); }
  show(["record", "calibrate"]);

  buttons.discard.addEventListener("click", function () {
    const old = current;
    current = null;
    review.hidden = true;
    $("record-save").hidden = true;
    show(["record", "calibrate"]);
    say("The take was discarded. Press Record to record another.", false);
    buttons.record.focus();
    // then another kept take, if there is one (two tabs, a retake cut off)
    (old ? forget(old.id) : Promise.resolve()).catch(function () {}).then(function () {
      return offerKept("The take was discarded. ");
    });
  });

  // A take from an earlier visit: one cut off mid-recording (the tab closed, the browser
  // crashed: put together from the chunks that were kept), one recorded and not sent, or
  // one whose sending did not finish (it goes on by itself).
  // More than one may be kept (two tabs, a retake cut off): the newest is offered, and the
  // others are said to be there and offered in turn once it is sent or discarded.
  const offerKept = function (after) {
   return keptTakes().then(function (takes) {
    // a sent take is not offered (its mark goes after SENT_KEPT_MS)
    (takes || []).forEach(function (t) {
      if (t.state === SENT && !(Date.now() - t.sent_at < SENT_KEPT_MS)) { forget(t.id).catch(function () {}); }
    });
    const mine = (takes || []).filter(function (t) { return t.campaign === campaign && t.state !== SENT; })
      .sort(function (a, b) { return b.created - a.created; });
    if (!mine.length || current || (recorder && recorder.state !== "inactive")) { return null; }
    const take = mine[0];
    const more = mine.length > 1 ? " " + (mine.length - 1) + " more take" + (mine.length > 2 ? "s are" : " is") +
      " kept on this device; " + (mine.length > 2 ? "they are" : "it is") + " offered once this one is sent or discarded." : "";
    return bytesOf(take).then(function (blob) {
      if (!blob.size) { return forget(take.id); }
      if (current || (recorder && recorder.state !== "inactive")) { return null; }
      take.blob = blob;
      putFields(take.fields);
      if (take.state === "sending") {
        offer(take, "Your take was not sent completely; sending goes on now.", false);
        sendOnce(take);
      } else if (take.state === "recording") {
        offer(take, (after || "") + "A take was cut off when this page closed; what was recorded until then " +
              "is kept (" + Math.round(blob.size / 1024) + " kB). Play it back, Send it, or Discard it." + more, false);
      } else {
        offer(take, (after || "") + "A take you recorded earlier is kept on this device: play it back, Send it, " +
              "Discard it, or Record again." + more, false);
      }
      return null;
    });
   }).catch(function () { /* private browsing without IndexedDB: recording still works */ });
  };
  offerKept();
})();
