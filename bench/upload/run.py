"""Upload throughput and server memory: a large file through tus on loopback.

    python -m bench.upload [--size-mb 1024] [--chunk-mb 4,64] [--repeat 2] [--no-peer]

Servers, in the same run, fed by the same client (Python, http.client, one PATCH per
chunk, the file read in 1 MiB blocks):

- **tutti**: the portal as docker-compose runs it (gunicorn, one sync worker), the
  upload finished into a clip (SQLite, no worker);
- **@tus/server**: the tus project's own Node server with its file store (from the npm
  registry into ``bench/upload/node/node_modules``, ``npm install`` on first use);
- **floor: gunicorn body sink**: the least a server under gunicorn does (``sink.py``:
  each PATCH body read in 1 MiB pieces and appended to a file, nothing else);
- **floor**: the same bytes copied file to file on the same disk (1 MiB blocks), into
  the page cache and with an fsync at the end (Tutti syncs a finished upload to disk
  before it becomes a clip; @tus/server's file store never syncs).

Printed per server and chunk size: MB/s (10^6 bytes per second of wall time, creation
to the last answer), the server's CPU seconds per GB (user + system of its process
tree: the fairer figure on a shared, busy machine), and its resident memory (the
whole process tree, sampled every 20 ms): before, peak, growth. Goals (issue 11):
>= 200 MB/s with <= 50 MiB RSS growth, and within 10 % of @tus/server.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent / "node"
OUT = ROOT / "bench" / "out" / "upload"
BLOCK = 1 << 20
MB = 1_000_000
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants."""
    total = 0
    for current in _tree(pid):
        try:
            with open(f"/proc/{current}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    total = 0
    for current in _tree(pid):
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Sampler:
    """Samples a process tree's RSS every 20 ms in a thread; ``peak`` is the most seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self.peak = tree_rss(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def make_source(size: int) -> Path:
    """A file of random bytes of ``size`` (kept under bench/out/upload between runs)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"source-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            left = size
            while left:
                block = os.urandom(min(16 * MIB, left))
                out.write(block)
                left -= len(block)
        os.replace(tmp, path)
    return path


class FileSlice:
    """A readable view of ``length`` bytes of an open file from ``start`` (http.client
    sends it in ``blocksize`` pieces without loading the chunk)."""

    def __init__(self, handle, start: int, length: int) -> None:
        self.handle, self.left = handle, length
        handle.seek(start)

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        return data


def tus_upload(endpoint: str, source: Path, chunk: int, metadata: dict[str, str]) -> float:
    """Upload ``source`` to the tus ``endpoint`` (creation, then PATCHes of ``chunk``
    bytes on one kept-alive connection); returns the seconds it took."""
    size = source.stat().st_size
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600, blocksize=BLOCK)
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items())
    started = time.perf_counter()
    conn.request("POST", parts.path, headers={"Tus-Resumable": "1.0.0",
                                              "Upload-Length": str(size),
                                              "Upload-Metadata": meta})
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 201, (answer.status, answer.headers)
    path = urlsplit(urljoin(endpoint, answer.headers["Location"])).path
    offset = 0
    with open(source, "rb") as handle:
        while offset < size:
            length = min(chunk, size - offset)
            conn.request("PATCH", path, body=FileSlice(handle, offset, length), headers={
                "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(length)})
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 204, (answer.status, answer.headers)
            offset = int(answer.headers["Upload-Offset"])
    conn.close()
    return time.perf_counter() - started


def wait_up(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(30)


def start_tutti(work: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "TUTTI_INSTANCE": str(work / "instance"),
           "TUTTI_DATABASE_URL": f"sqlite:///{work / 'tutti.sqlite3'}",
           "TUTTI_MEDIA_ROOT": str(work / "media"), "TUTTI_SECRET_KEY": "bench",
           "TUTTI_BROKER_URL": "memory://", "TUTTI_EMBEDDED_WORKER": "false",
           "TUTTI_MAX_UPLOAD_MB": "100000", "TUTTI_UPLOAD_LIMIT_ADDRESS": "100000 per hour",
           "TUTTI_LOG_LEVEL": "WARNING"}
    subprocess.run([str(bin_dir / "tutti"), "campaign", "create", "bench", "--title", "Bench",
                    "--parts", "Alto"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    process = subprocess.Popen(
        [str(bin_dir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--timeout", "600", "portal:create_app()"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    wait_up(port, process)
    meta = {"campaign": "bench", "name": "Bench", "part": "Alto", "consent": "yes",
            "filename": "take.mp4"}
    return process, f"http://127.0.0.1:{port}/api/v1/uploads", meta


def start_sink(work: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "bench.upload.sink:app"],
        env={**os.environ, "TMPDIR": str(work)}, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    wait_up(port, process)
    return process, f"http://127.0.0.1:{port}/files", {}


def start_node(work: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    if not (NODE_DIR / "node_modules" / "@tus" / "server").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR,
                       check=True, timeout=600)
    port = free_port()
    store = work / "node-files"
    store.mkdir()
    process = subprocess.Popen(["node", "server.mjs", str(port), str(store)], cwd=NODE_DIR,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    wait_up(port, process)
    return process, f"http://127.0.0.1:{port}/files", {"filename": "take.mp4"}


def floor(source: Path, work: Path, sync: bool) -> float:
    started = time.perf_counter()
    with open(source, "rb") as src, open(work / "copy.bin", "wb") as out:
        shutil.copyfileobj(src, out, BLOCK)
        out.flush()
        if sync:
            os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    (work / "copy.bin").unlink()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="MiB to upload (1024: 1 GiB)")
    parser.add_argument("--chunk-mb", default="4,64",
                        help="PATCH sizes in MiB (4: the participant page's)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per row (the best is kept)")
    parser.add_argument("--no-peer", action="store_true", help="skip @tus/server")
    args = parser.parse_args(argv)
    size = args.size_mb * MIB
    source = make_source(size)
    chunks = [int(c) * MIB for c in args.chunk_mb.split(",")]
    servers = [("floor: gunicorn body sink", start_sink), ("tutti (gunicorn)", start_tutti)]
    if not args.no_peer:
        servers.append(("@tus/server (node)", start_node))

    rows: list[tuple[str, str, float, float, float, float]] = []
    with tempfile.TemporaryDirectory(dir=OUT) as scratch:
        work = Path(scratch)
        for sync in (False, True):
            best_floor = min(floor(source, work, sync) for _ in range(args.repeat))
            rows.append(("floor: file copy" + (" + fsync" if sync else ""), "-",
                         size / best_floor / MB, 0.0, 0.0, 0.0))
        for label, start in servers:
            for chunk in chunks:
                best = None
                for attempt in range(args.repeat):
                    run = work / f"server{len(rows)}-{chunk}-{attempt}"
                    run.mkdir()
                    process, endpoint, meta = start(run)
                    try:
                        small = make_source(4 * MIB)
                        tus_upload(endpoint, small, chunk, meta)  # warm: imports, first clip
                        before = tree_rss(process.pid)
                        cpu = tree_cpu(process.pid)
                        with Sampler(process.pid) as sampler:
                            seconds = tus_upload(endpoint, source, chunk, meta)
                        cpu = tree_cpu(process.pid) - cpu
                        result = (size / seconds / MB, before / MIB,
                                  (sampler.peak - before) / MIB, cpu / (size / 1e9))
                    finally:
                        stop(process)
                        shutil.rmtree(run, ignore_errors=True)
                    if best is None or result[0] > best[0]:
                        best = result
                rows.append((label, f"{chunk // MIB} MiB", *best))

    print(f"\n{args.size_mb} MiB through tus on loopback, best of {args.repeat} "
          f"(MB = 10^6 bytes; RSS of the server's process tree)\n")
    print(f"| {'server':<26} | {'PATCH size':>10} | {'MB/s':>7} | {'server CPU s/GB':>15} "
          f"| {'RSS before':>12} | {'RSS growth':>12} |")
    print(f"|{'-' * 28}|{'-' * 12}|{'-' * 9}|{'-' * 17}|{'-' * 14}|{'-' * 14}|")
    for label, chunk, rate, before, growth, cpu in rows:
        server = chunk != "-"
        print(f"| {label:<26} | {chunk:>10} | {rate:7.0f} | "
              f"{f'{cpu:.2f}' if server else '-':>15} | "
              f"{f'{before:.1f} MiB' if server else '-':>12} | "
              f"{f'{growth:.1f} MiB' if server else '-':>12} |")
    print()
    for chunk in chunks:
        name = f"{chunk // MIB} MiB"
        ours = next(r for r in rows if r[0].startswith("tutti") and r[1] == name)
        peer = next((r for r in rows if r[0].startswith("@tus") and r[1] == name), None)
        verdict = [f"{ours[2]:.0f} MB/s {'>=' if ours[2] >= 200 else '<'} 200",
                   f"growth {ours[4]:.1f} MiB {'<=' if ours[4] <= 50 else '>'} 50"]
        if peer:
            ratio = ours[2] / peer[2]
            within = "within" if ratio >= 0.9 else "not within"
            verdict.append(f"{ratio:.0%} of @tus/server ({within} 10 %)")
        print(f"goals at {chunk // MIB} MiB PATCHes: " + "; ".join(verdict))
    return 0
