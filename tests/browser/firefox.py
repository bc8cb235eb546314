"""Debian's Firefox ESR driven over WebDriver BiDi, the W3C protocol Firefox speaks itself
(its remote agent, ``--remote-debugging-port``): no geckodriver, no Selenium, no patched
browser build. Playwright's Firefox is a patched build that ``playwright install`` fetches
(not allowed here), and geckodriver is published on crates.io and GitHub only, which this
project's machines do not reach; the BiDi socket needs nothing but ``websockets`` (PyPI).

Just what the record-along tests need: a browser with fake camera and microphone
(``media.navigator.streams.fake``), isolated user contexts (each with its own storage, as
Playwright's contexts), preload scripts (Playwright's ``add_init_script``), navigation,
script evaluation with user activation, and clicks as real pointer input.

Source: https://w3c.github.io/webdriver-bidi/ (commands and remote values), and Firefox's
remote agent (https://firefox-source-docs.mozilla.org/remote/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"

# The browser's fake devices (a coloured test picture and a sine tone) accepted without a
# prompt, sound allowed to start without a gesture, and nothing asked of the network.
PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.block-webaudio": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "extensions.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    # fewer processes on a small, shared machine: one content process, no site isolation
    "fission.autostart": False,
    "dom.ipc.processCount": 1,
    "browser.startup.page": 0,
    "browser.newtabpage.enabled": False,
    "browser.places.importBookmarksHTML": False,
}


FUNCTION = re.compile(r"^\s*(async\s+)?(function\b|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)")


class BidiError(RuntimeError):
    """A BiDi command answered with an error (``error``: its code, e.g. ``no such
    element``; the message holds the browser's words)."""


def missing() -> str | None:
    """Why Firefox cannot be driven here (a sentence naming what to install), or None."""
    if not os.path.exists(FIREFOX):
        return "Debian's firefox-esr is not installed (`make firefox` installs it)"
    if not os.path.exists(PulseAudio.BINARY):
        return ("PulseAudio is not installed (`make firefox` installs it): Firefox's Web Audio "
                "needs an output device, here a PulseAudio null sink")
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:
        return "the websockets package is missing (`make firefox` installs the firefox extra)"
    return None


class PulseAudio:
    """A private PulseAudio server (its own socket in a temporary folder, anonymous access)
    with one null sink, ``tutti_out``, whose monitor is the default source: Firefox's Web
    Audio needs an output device to run at all (without one, headless on a machine with no
    sound card, an AudioContext stays "suspended": ``resume()`` never settles and
    ``currentTime`` stays 0), and the null sink is one that plays at the sound card's pace
    with nothing to hear. ``env``: what Firefox needs to use it (``PULSE_SERVER``)."""

    BINARY = shutil.which("pulseaudio") or "/usr/bin/pulseaudio"

    def __init__(self, timeout: float = 60.0):
        self.dir = Path(tempfile.mkdtemp(prefix="tutti-pulse-"))
        socket_path = self.dir / "native"
        (self.dir / "default.pa").write_text(
            f"load-module module-native-protocol-unix socket={socket_path} auth-anonymous=1\n"
            "load-module module-null-sink sink_name=tutti_out rate=48000\n"
            "set-default-sink tutti_out\nset-default-source tutti_out.monitor\n")
        self.env = {"PULSE_SERVER": f"unix:{socket_path}"}
        self.log = open(self.dir / "pulse.log", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.BINARY, "-n", "-F", str(self.dir / "default.pa"), "--exit-idle-time=-1",
             "--daemonize=no", "--use-pid-file=no", "--disable-shm=yes"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "HOME": str(self.dir), "XDG_RUNTIME_DIR": str(self.dir),
                 "PULSE_RUNTIME_PATH": str(self.dir)})
        deadline = time.monotonic() + timeout
        while not socket_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                tail = self.log.read()[-2000:].decode(errors="replace")
                self.close()
                raise RuntimeError(f"PulseAudio did not start: {tail}")
            time.sleep(0.1)

    def close(self) -> None:
        stop(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(proc: subprocess.Popen) -> None:
    """End a process we started: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def free_port() -> int:
    """A free TCP port on 127.0.0.1: from ``TUTTI_TEST_PORTS`` (``a-b``) when it is set, so
    runs on a shared machine keep to their own range, else any the system gives."""
    span = os.environ.get("TUTTI_TEST_PORTS")
    candidates = range(int(span.split("-")[0]), int(span.split("-")[1]) + 1) if span else [0]
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in TUTTI_TEST_PORTS={span}")


def value_of(remote: dict) -> Any:
    """A BiDi remote value as Python: primitives, arrays, plain objects and maps; nodes and
    other objects as their ``{"type", "sharedId"/"handle"}`` reference."""
    kind = remote.get("type")
    if kind in ("undefined", "null"):
        return None
    if kind in ("string", "boolean"):
        return remote["value"]
    if kind == "number":
        v = remote["value"]
        return {"NaN": float("nan"), "-0": -0.0, "Infinity": float("inf"),
                "-Infinity": float("-inf")}.get(v, v) if isinstance(v, str) else v
    if kind == "bigint":
        return int(remote["value"])
    if kind in ("array", "set"):
        return [value_of(v) for v in remote.get("value", [])]
    if kind in ("object", "map"):
        out = {}
        for key, v in remote.get("value", []):
            out[key if isinstance(key, str) else json.dumps(value_of(key))] = value_of(v)
        return out
    return {k: remote[k] for k in ("type", "sharedId", "handle") if k in remote}


class Firefox:
    """One headless Firefox ESR with a fresh profile, driven over its BiDi socket.

    ``prefs``: added to PREFS (e.g. a fake device's frequency); ``env``: added to its
    environment (PulseAudio's ``env``). ``close()`` ends it and removes the profile.
    Commands are synchronous; events subscribed to arrive in ``self.events`` (a list of
    ``(method, params)``)."""

    def __init__(self, prefs: dict | None = None, env: dict | None = None,
                 timeout: float = 600.0):
        from websockets.sync.client import connect

        self.profile = Path(tempfile.mkdtemp(prefix="tutti-firefox-"))
        every = {**PREFS, **(prefs or {})}
        (self.profile / "user.js").write_text("".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in every.items()))
        port = free_port()
        self.log = open(self.profile / "firefox.log", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [FIREFOX, "-headless", "-no-remote", "-profile", str(self.profile),
             "--remote-debugging-port", str(port), "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1", **(env or {})})
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            self.log.seek(0)
            found = re.search(rb"WebDriver BiDi listening on (ws://\S+)", self.log.read())
            if found:
                url = found.group(1).decode()
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                tail = self.log.read()[-2000:].decode(errors="replace")
                self.close()
                raise RuntimeError(f"Firefox did not open its BiDi socket: {tail}")
            time.sleep(0.1)
        self.ws = connect(url.rstrip("/") + "/session", max_size=64 * 2**20,
                          open_timeout=timeout)
        self.ids = 0
        self.events: list[tuple[str, dict]] = []
        self.answers: dict[int, dict] = {}
        self.lock = threading.Lock()
        self.command("session.new", {"capabilities": {}}, timeout=timeout)

    def command(self, method: str, params: dict, timeout: float = 600.0) -> dict:
        """Send one command and return its result; events meanwhile go to ``events``."""
        with self.lock:
            self.ids += 1
            mine = self.ids
            self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{method}: no answer in {timeout} s")
                msg = json.loads(self.ws.recv(timeout=left))
                if msg.get("type") == "event":
                    self.events.append((msg["method"], msg["params"]))
                    continue
                if msg.get("id") != mine:
                    continue
                if msg.get("type") == "error":
                    raise BidiError(f"{method}: {msg.get('error')}: {msg.get('message')}")
                return msg["result"]

    def new_context(self, init_script: str | None = None) -> Context:
        """A fresh user context (own cookies, storage, IndexedDB), with ``init_script``
        run before the page's scripts on every page it opens."""
        uc = self.command("browser.createUserContext", {})["userContext"]
        if init_script:
            self.command("script.addPreloadScript", {
                "functionDeclaration": "() => {\n" + init_script + "\n}",
                "userContexts": [uc]})
        return Context(self, uc)

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                try:
                    self.command("browser.close", {}, timeout=10)
                except Exception:  # noqa: BLE001 - closing anyway
                    pass
                self.ws.close()
        finally:
            stop(self.proc)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def version(self) -> str:
        out = subprocess.run([FIREFOX, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip()


class Context:
    """A user context: ``new_page()`` opens a tab in it; ``close()`` removes it (and its
    storage)."""

    def __init__(self, browser: Firefox, user_context: str):
        self.browser = browser
        self.id = user_context

    def new_page(self) -> Page:
        got = self.browser.command("browsingContext.create",
                                   {"type": "tab", "userContext": self.id})
        return Page(self.browser, got["context"])

    def close(self) -> None:
        self.browser.command("browser.removeUserContext", {"userContext": self.id})


class Page:
    """A tab: the few Playwright-like calls the tests use."""

    def __init__(self, browser: Firefox, context: str):
        self.browser = browser
        self.context = context

    def goto(self, url: str) -> None:
        self.browser.command("browsingContext.navigate",
                             {"context": self.context, "url": url, "wait": "complete"})

    def reload(self) -> None:
        self.browser.command("browsingContext.reload",
                             {"context": self.context, "wait": "complete"})

    @property
    def url(self) -> str:
        return self.evaluate("location.href")

    def evaluate(self, expression: str, *args: Any, gesture: bool = False) -> Any:
        """The value of ``expression`` in the page, awaited if a promise. With ``args``,
        ``expression`` is a function called with them (JSON values)."""
        target = {"context": self.context}
        if args or FUNCTION.match(expression):  # a function is called, as Playwright's
            result = self.browser.command("script.callFunction", {
                "functionDeclaration": expression, "awaitPromise": True, "target": target,
                "arguments": [_local(a) for a in args],
                "userActivation": gesture})
        else:
            result = self.browser.command("script.evaluate", {
                "expression": expression, "awaitPromise": True, "target": target,
                "userActivation": gesture})
        if result.get("type") == "exception":
            details = result["exceptionDetails"]
            raise BidiError(f"page script threw: {details.get('text')}")
        return value_of(result["result"])

    def is_visible(self, selector: str) -> bool:
        return bool(self.evaluate(
            "s => { const e = document.querySelector(s); if (!e) { return false; } "
            "const r = e.getBoundingClientRect(); return !e.closest('[hidden]') && "
            "getComputedStyle(e).visibility !== 'hidden' && r.width > 0 && r.height > 0; }",
            selector))

    def wait_for(self, predicate: str, timeout: float = 30.0, *args: Any) -> Any:
        """Poll the page until the function ``predicate`` returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.evaluate(predicate, *args)
            if got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {predicate!r} {args}")
            time.sleep(0.1)

    def click(self, selector: str, timeout: float = 30.0) -> None:
        """A real click (pointer input at the element's centre, a user gesture), once the
        element is visible."""
        self.wait_for("s => { const e = document.querySelector(s); return !!e && "
                      "!e.closest('[hidden]') && e.getBoundingClientRect().width > 0; }",
                      timeout, selector)
        got = self.browser.command("script.callFunction", {
            "functionDeclaration": "s => { const e = document.querySelector(s); "
                                   "e.scrollIntoView({block: 'center'}); return e; }",
            "arguments": [_local(selector)], "awaitPromise": False,
            "target": {"context": self.context}, "resultOwnership": "root"})
        element = {"sharedId": got["result"]["sharedId"]}
        self.browser.command("input.performActions", {"context": self.context, "actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "x": 0, "y": 0,
                 "origin": {"type": "element", "element": element}},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0}]}]})
        self.browser.command("input.releaseActions", {"context": self.context})

    def fill(self, selector: str, value: str) -> None:
        self.evaluate("(s, v) => { const e = document.querySelector(s); e.focus(); e.value = v; "
                      "e.dispatchEvent(new Event('input', {bubbles: true})); "
                      "e.dispatchEvent(new Event('change', {bubbles: true})); }",
                      selector, value)

    def close(self) -> None:
        self.browser.command("browsingContext.close", {"context": self.context})


def _local(value: Any) -> dict:
    """A Python value as a BiDi local value."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, (int, float)):
        return {"type": "number", "value": value}
    if isinstance(value, str):
        return {"type": "string", "value": value}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "value": [_local(v) for v in value]}
    if isinstance(value, dict):
        return {"type": "object", "value": [[k, _local(v)] for k, v in value.items()]}
    raise TypeError(f"no BiDi local value for {type(value).__name__}")
