// The organizer's "check by ear": a Listen link plays the guide (left ear) against the take
// (right ear) at that offset in the page's player instead of opening the WAV on its own.
(function () {
  "use strict";
  const player = document.getElementById("sync-listen");
  if (!player) { return; }
  const play = function (url) {
    player.src = url;
    player.play().catch(function () { /* the browser may ask for a click on the player */ });
  };
  document.querySelectorAll("a[data-listen]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      document.querySelectorAll("tr.listening").forEach(function (row) { row.classList.remove("listening"); });
      const row = link.closest("tr");
      if (row) { row.classList.add("listening"); }
      play(link.href);
    });
  });
  document.querySelectorAll("a[data-listen-input]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      const input = link.closest("form").querySelector("input[name=offset_seconds]");
      const url = new URL(link.href, window.location.href);
      url.searchParams.set("offset", input.value);
      play(url.toString());
    });
  });
}());
