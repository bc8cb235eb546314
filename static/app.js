// Progressive enhancement only: every form works without this file.
(function () {
  "use strict";

  // The resumable upload of the participant's page lives in upload.js (with
  // tus-js-client, loaded by that page only).

  // (The status page's polling: static/status.js.)

  // "Find yourself": a credit's timestamp seeks the player; with the render's tile map
  // (data-tiles: [[x, y, w, h, start, end], ...] in the video's pixels and seconds) the
  // performer's tile is outlined over the video while it is on screen.
  const player = document.getElementById("mashup");
  if (player) {
    const outline = document.getElementById("tile-outline");
    const nameTag = document.getElementById("tile-name");
    let spans = [];
    const place = function () {
      if (!outline) { return; }
      const t = player.currentTime;
      const span = spans.find(function (s) { return t >= s[4] - 0.05 && t < s[5]; });
      const vw = player.videoWidth, vh = player.videoHeight;
      if (!span || !vw || !vh) { outline.hidden = true; return; }
      // the picture inside the element (object-fit: contain, centred)
      const box = player.getBoundingClientRect();
      const scale = Math.min(box.width / vw, box.height / vh);
      const left = (box.width - vw * scale) / 2, top = (box.height - vh * scale) / 2;
      outline.style.left = (player.offsetLeft + left + span[0] * scale) + "px";
      outline.style.top = (player.offsetTop + top + span[1] * scale) + "px";
      outline.style.width = (span[2] * scale) + "px";
      outline.style.height = (span[3] * scale) + "px";
      outline.hidden = false;
    };
    const seek = function (seconds) {
      player.currentTime = seconds;
      player.play().catch(function () {});
      place();
    };
    const choose = function (link) {
      spans = link.dataset.tiles ? JSON.parse(link.dataset.tiles) : [];
      if (nameTag) { nameTag.textContent = link.dataset.name || ""; }
      const at = parseFloat(link.dataset.seek);
      if (player.readyState >= 1) { seek(at); } else {
        player.addEventListener("loadedmetadata", function () { seek(at); }, { once: true });
        player.load();
      }
    };
    ["timeupdate", "seeked", "loadedmetadata", "resize"].forEach(function (name) {
      player.addEventListener(name, place);
    });
    window.addEventListener("resize", place);
    document.querySelectorAll("[data-seek]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        choose(link);
        player.scrollIntoView({ behavior: "smooth" });
      });
    });
    const found = document.querySelector("[data-found]");
    const hash = /^#t=([0-9.]+)$/.exec(window.location.hash);
    if (found) {
      choose(found);  // a search: the first performer found, outlined
    } else if (hash) {
      player.addEventListener("loadedmetadata", function () { seek(parseFloat(hash[1])); }, { once: true });
    }
  }
  // (Live render progress for organizers: static/console.js.)
})();
