"""The production proxy (portal/proxy.conf.template) finds the page and uploads servers by
name at each request, as Docker's embedded DNS names the containers of a service: a service
scaled out (``docker compose up --scale web=2``) or a container restarted with a new address
takes requests without restarting nginx.

Real nginx (Debian's, skipped where it is not installed) runs the template with the
resolver pointed at a small DNS server of the test (UDP, A records only), and two HTTP
servers on 127.0.0.2 and 127.0.0.3 stand for two containers of a service."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from bench.load.run import TEMPLATE, render_template_file
from tests.integration.harness import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                  else None)


class TinyDns:
    """A DNS server on 127.0.0.1 (UDP) answering every A question with ``addresses``
    (TTL 60 s: the proxy's ``valid=10s`` must be what bounds its cache), any other
    question with no record. ``asked`` lists the names asked, in order (RFC 1035 4.1)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.asked: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", free_port()))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                query, peer = self.sock.recvfrom(512)
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(Exception):  # a malformed query gets no answer
                self.sock.sendto(self._answer(query), peer)

    def _answer(self, query: bytes) -> bytes:
        ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
        assert qdcount == 1
        end, labels = 12, []
        while query[end]:
            labels.append(query[end + 1:end + 1 + query[end]].decode())
            end += 1 + query[end]
        qtype, _qclass = struct.unpack("!HH", query[end + 1:end + 5])
        question = query[12:end + 5]
        self.asked.append(".".join(labels))
        records = list(self.addresses) if qtype == 1 else []
        header = struct.pack("!HHHHHH", ident, 0x8180, 1, len(records), 0, 0)
        answers = b"".join(struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(a)
                           for a in records)
        return header + question + answers

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


def _backend(address: str, port: int, name: str) -> ThreadingHTTPServer:
    """An HTTP server on ``address:port`` answering every GET with ``name``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _start_nginx(tmp_path: Path, dns_port: int, backend_port: int) -> tuple[subprocess.Popen,
                                                                             str]:
    conf = tmp_path / "nginx"
    for sub in ("cache", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (conf / sub).mkdir(parents=True, exist_ok=True)
    listen = free_port()
    (conf / "tutti.conf").write_text(render_template_file(TEMPLATE, {
        # docker-compose.yml's values but the resolver's address and the ports
        "TUTTI_PROXY_LISTEN": f"127.0.0.1:{listen}",
        "TUTTI_PAGES_UPSTREAM": f"web:{backend_port}",
        "TUTTI_UPLOADS_UPSTREAM": f"uploads:{backend_port}",
        "TUTTI_PROXY_RESOLVER": f"127.0.0.1:{dns_port}",
        "TUTTI_MEDIA_ROOT": str(tmp_path), "TUTTI_PROXY_CACHE": str(conf / "cache"),
        "TUTTI_MAX_UPLOAD_MB": "1024", "TUTTI_WATCH_CACHE_SECONDS": "10"}))
    user = "user root;\n" if os.geteuid() == 0 else ""
    (conf / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {conf / 'nginx.pid'};\n"
        f"error_log {conf / 'error.log'} warn;\nevents {{}}\n"
        f"http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n"
        f"  client_body_temp_path {conf / 'client_body'};\n"
        f"  proxy_temp_path {conf / 'proxy'};\n  fastcgi_temp_path {conf / 'fastcgi'};\n"
        f"  uwsgi_temp_path {conf / 'uwsgi'};\n  scgi_temp_path {conf / 'scgi'};\n"
        f"  include {conf / 'tutti.conf'};\n}}\n")
    proc = subprocess.Popen([NGINX, "-c", str(conf / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{listen}"


def _who(base: str, path: str) -> str:
    with contextlib.suppress(requests.RequestException):
        answer = requests.get(f"{base}{path}", timeout=5)
        return answer.text if answer.status_code == 200 else f"HTTP {answer.status_code}"
    return "no answer"


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install "
                                          "nginx)")
def test_the_proxy_follows_the_services_addresses_without_a_restart(tmp_path):
    port = free_port()
    try:
        first = _backend("127.0.0.2", port, "first")
        second = _backend("127.0.0.3", port, "second")
    except OSError as exc:
        pytest.skip(f"no second loopback address here: {exc}")
    dns = TinyDns(["127.0.0.2"])
    proc, base = _start_nginx(tmp_path, dns.port, port)
    try:
        deadline = time.monotonic() + 20
        while _who(base, "/") != "first" and time.monotonic() < deadline:
            time.sleep(0.2)
        log = (tmp_path / "nginx" / "error.log")
        assert _who(base, "/") == "first", log.read_text() if log.exists() else ""
        assert _who(base, "/api/v1/uploads") == "first"
        assert {"web", "uploads"} <= set(dns.asked)  # by name, through the resolver

        # the service's container replaced by one at another address: seen within
        # valid=10s (the DNS's own TTL is 60 s), nginx not restarted
        dns.addresses = ["127.0.0.3"]
        moved = time.monotonic()
        while _who(base, "/") != "second" and time.monotonic() - moved < 30:
            time.sleep(0.5)
        waited = time.monotonic() - moved
        assert _who(base, "/") == "second" and waited < 20, waited

        # scaled out to two containers: both take requests
        dns.addresses = ["127.0.0.2", "127.0.0.3"]
        seen: set[str] = set()
        started = time.monotonic()
        while not {"first", "second"} <= seen and time.monotonic() - started < 30:
            seen.add(_who(base, "/"))
            time.sleep(0.2)
        assert {"first", "second"} <= seen, seen
        assert proc.poll() is None  # the same nginx all along
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        dns.close()
        first.shutdown()
        second.shutdown()
