"""The deployment of the README's production section: gunicorn (the command and
``TUTTI_TRUSTED_PROXIES`` of ``docker-compose.yml``'s web service) behind a
TLS-terminating reverse proxy that gunicorn itself does not trust (in docker the
proxy's address is not gunicorn's 127.0.0.1), and ``tutti serve`` behind the same
proxy. A participant uploads through the real page in Chromium over HTTPS: no
mixed content, the upload completes and the private link opens over HTTPS; every URL
the upload API returns is HTTPS on the proxy's host.

The proxy is a small Python one (http.server + ssl, a self-signed certificate made
with openssl): it sends ``X-Forwarded-Proto: https``, ``X-Forwarded-For`` and
``X-Forwarded-Host`` and, like nginx's default, the upstream's own address as Host."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def compose_web() -> tuple[list[str], str]:
    """The web service's command and its TUTTI_TRUSTED_PROXIES default, read from
    docker-compose.yml (so the test follows what is deployed)."""
    text = (ROOT / "docker-compose.yml").read_text()
    web = text[text.index("\n  web:"):text.index("\n  worker-intake:")]
    command = json.loads(re.search(r"command: (\[.*?\])", web, re.S).group(1))
    trusted = re.search(r"TUTTI_TRUSTED_PROXIES: \$\{TUTTI_TRUSTED_PROXIES:-(\d+)\}", text)
    assert trusted, "docker-compose.yml sets no TUTTI_TRUSTED_PROXIES for its proxy"
    return command, trusted.group(1)


class TLSProxy:
    """HTTPS on a free port, forwarded to ``http://127.0.0.1:upstream``."""

    def __init__(self, upstream: int, cert: Path, key: Path) -> None:
        target = ("127.0.0.1", upstream)

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP and not k.lower().startswith("x-forwarded-")}
                headers["Host"] = f"{target[0]}:{target[1]}"
                headers["X-Forwarded-Proto"] = "https"
                headers["X-Forwarded-For"] = self.client_address[0]
                headers["X-Forwarded-Host"] = self.headers["Host"]
                upstream = http.client.HTTPConnection(*target, timeout=120)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP | {"content-length", "date", "server"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", answer.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_HEAD = do_DELETE = do_OPTIONS = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def wait_until_up(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not start:\n" + log.read_text()[-3000:])


@pytest.mark.parametrize("server", ["gunicorn", "tutti serve"])
def test_upload_through_a_tls_proxy(server, browser, certificate, tmp_path, media_files):
    command, trusted = compose_web()
    port = free_port()
    env = {**os.environ, "TUTTI_INSTANCE": str(tmp_path / "instance"),
           "TUTTI_DATABASE_URL": f"sqlite:///{tmp_path / 'tutti.sqlite3'}",
           "TUTTI_MEDIA_ROOT": str(tmp_path / "media"), "TUTTI_SECRET_KEY": "tls-test",
           "TUTTI_BROKER_URL": "memory://", "TUTTI_EMBEDDED_WORKER": "false",
           "TUTTI_TRUSTED_PROXIES": trusted,
           # absolute links are built only from a trusted host (portal.links); `tutti
           # serve` on loopback trusts loopback names by itself, gunicorn needs this
           "TUTTI_TRUSTED_HOSTS": "127.0.0.1",
           # gunicorn trusts forwarded headers only from these; in docker the proxy is not one
           "FORWARDED_ALLOW_IPS": "192.0.2.1"}
    subprocess.run([str(BIN / "tutti"), "campaign", "create", "tls-choir", "--title",
                    "TLS Choir", "--parts", "Alto"], env=env, check=True, capture_output=True,
                   timeout=120)
    if server == "gunicorn":
        assert command[0] == "gunicorn" and command[-1] == "portal:create_app()"
        argv = [str(BIN / "gunicorn"), *command[1:]]
        # the compose command reads its settings from portal/gunicorn_conf.py (which
        # takes GUNICORN_BIND / GUNICORN_WORKERS); options given on the command line
        # would win over both, so replace them when present
        env.update(GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2")
        for flag, value in (("--bind", f"127.0.0.1:{port}"), ("--workers", "2")):
            if flag in argv:
                argv[argv.index(flag) + 1] = value
    else:
        argv = [str(BIN / "tutti"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=ROOT, start_new_session=True)
    proxy = None
    try:
        wait_until_up(port, process, log)
        proxy = TLSProxy(port, *certificate)
        # the real page, over HTTPS: nothing blocked as mixed content
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        blocked: list[str] = []
        page.on("console", lambda m: blocked.append(m.text) if "Mixed Content" in m.text
                else None)
        page.goto(f"{proxy.base}/c/tls-choir")
        page.set_input_files("input[name=file]", str(media_files["landscape"]))
        page.fill("input[name=name]", "Ana over TLS")
        page.select_option("select[name=part]", "Alto")
        page.check("input[name=consent]")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"https://127\.0\.0\.1:\d+/clip/[A-Za-z0-9_-]{20,}$"),
                          timeout=60_000)
        assert page.url.startswith(proxy.base) and not blocked, blocked
        context.close()

        # every URL the upload API returns: HTTPS on the proxy's host, or a path
        import requests
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # self-signed
        meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in {
            "campaign": "tls-choir", "name": "Bo", "part": "Alto", "consent": "yes",
            "filename": "b.mp4"}.items())
        tus = {"Tus-Resumable": "1.0.0"}
        created = requests.post(f"{proxy.base}/api/v1/uploads", verify=False, timeout=30,
                                headers={**tus, "Upload-Length": "3", "Upload-Metadata": meta})
        assert created.status_code == 201
        location = created.headers["Location"]
        assert location.startswith("/api/v1/uploads/") or location.startswith(proxy.base)
        assert "Strict-Transport-Security" in created.headers  # the portal saw HTTPS
        url = requests.compat.urljoin(proxy.base, location)
        done = requests.patch(url, data=b"abc", verify=False, timeout=30, headers={
            **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        status = done.headers["Tutti-Status-Url"]
        assert status.startswith("/clip/") or status.startswith(proxy.base + "/clip/")
        body = requests.get(url, verify=False, timeout=30,
                            headers={"Accept": "application/json"}).json()
        assert body["status_url"].startswith(proxy.base + "/clip/"), body
        assert body["api_url"].startswith(proxy.base + "/api/v1/clips/"), body
    finally:
        if proxy:
            proxy.close()
        os.killpg(process.pid, 15)
        process.wait(30)
