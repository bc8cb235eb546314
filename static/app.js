// Progressive enhancement only: every form works without this file.
(function () {
  "use strict";

  // The resumable upload of the participant's page lives in upload.js (with
  // tus-js-client, loaded by that page only).

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
