"""Faults with real processes, repeated: ``python -m bench.faults --repeat N``.

Each run starts its own Redis server (own port), `tutti serve` / `tutti worker`
processes on PostgreSQL (or SQLite with ``--database sqlite``), makes the fault and
counts what was lost, what was done twice and which temporary files stayed. The table
gives, per fault: runs, clips lost, renders doubled, temp files left, and the seconds
from the fault to everything done (median and worst). ``--peer-lease`` adds, for the
worker kills, runs with the lease the portal had before (``--peer-lease 1920``: 32
minutes) and a wait of ``--peer-wait`` seconds: what an operator saw then.

The scenarios are those of ``tests/integration/test_faults.py`` (one run each there).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.integration import harness

DEFAULT_PG = os.environ.get("TUTTI_TEST_PG_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _database(kind: str, root: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{root / 'bench.sqlite3'}"
    from tests.conftest import reset_postgres

    reset_postgres(DEFAULT_PG)
    return DEFAULT_PG


def run_once(name: str, root: Path, takes: dict[str, Path], database: str,
             lease: int) -> harness.Outcome | str:
    """One run of one fault; a string when it was skipped (the reason)."""
    media = None
    if name == "full-disk":
        media = root / "disk"
        if not harness.mount_small_disk(media, 24):
            return "needs root and mount(8) for a small tmpfs"
    try:
        stack = harness.Stack(root, _database(database, root), lease_seconds=lease,
                              media_root=media / "media" if media else None)
        try:
            if name == "kill-intake":
                return harness.kill_mid_intake(stack, takes["long"])
            if name == "kill-render":
                return harness.kill_mid_render(stack, takes["short"])
            if name == "redis-restart":
                return harness.redis_restarted_empty(stack, takes["short"])
            if name == "redis-oom":
                return harness.redis_out_of_memory(stack, takes["short"])
            if name == "web-restart":
                return harness.web_restart_during_upload(stack, takes["short"])
            if name == "full-disk":
                return harness.full_disk(stack, takes["short"], takes["big"])
            if name == "render-twice":
                return harness.render_requested_twice(stack, takes["short"])
            raise ValueError(name)
        except harness.FaultNotMade as exc:
            return harness.Outcome(void=True, notes=[f"void: {exc}"])
        except Exception as exc:  # noqa: BLE001 - a run that broke counts as lost work
            return harness.Outcome(lost=1, notes=[f"{exc.__class__.__name__}: {exc}"])
        finally:
            stack.close()
    finally:
        if media is not None:
            harness.unmount(media)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each fault")
    parser.add_argument("--only", default=",".join(harness.SCENARIOS),
                        help=f"comma-separated, of: {', '.join(harness.SCENARIOS)}")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--lease-seconds", type=int, default=3,
                        help="the workers' lease (production default 30)")
    parser.add_argument("--peer-lease", type=int, default=0,
                        help="also run the worker kills with this lease (e.g. 1920)")
    parser.add_argument("--peer-wait", type=float, default=60.0,
                        help="how long the peer runs wait for recovery")
    parser.add_argument("--slowdown", type=float, default=1.0,
                        help="every wait this many times longer (a machine whose cores are "
                             "taken by jobs of higher priority: a wait that runs out counts "
                             "as work lost); not for the peer runs")
    parser.add_argument("--verbose", action="store_true", help="print each run's notes")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(harness.SCENARIOS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")

    work = Path(tempfile.mkdtemp(prefix="tutti-bench-faults-"))
    takes = {"long": harness.make_clip(work / "takes" / "long.mp4", 8, "640x360"),
             "short": harness.make_clip(work / "takes" / "short.mp4", 4, "320x180"),
             "big": harness.make_clip(work / "takes" / "big.mp4", 6, "640x360")}
    plan = [(n, args.lease_seconds, "") for n in names]
    if args.peer_lease:
        plan += [(n, args.peer_lease, " (peer)") for n in names
                 if n in ("kill-intake", "kill-render")]
    # the faults in turn, run 1 of each, then run 2 of each...: a bench stopped early
    # (Ctrl-C, SIGINT) prints the table of the runs done, every fault about as often
    results = {f"{name}{tag}": (lease, [], [], []) for name, lease, tag in plan}
    order = [(k, name, lease, tag) for k in range(args.repeat) for name, lease, tag in plan
             if not (tag and k)]
    started = time.monotonic()
    interrupted = False
    try:
        for k, name, lease, tag in order:
            _lease, outcomes, skipped, voids = results[f"{name}{tag}"]
            if skipped:
                continue
            root = work / f"{name}{tag.strip()}-{k}"
            root.mkdir(parents=True)
            if tag:  # the peer: a lease of half an hour, and a limited wait
                os.environ["TUTTI_BENCH_WAIT"] = str(args.peer_wait)
                os.environ.pop("TUTTI_TEST_SLOWDOWN", None)
            else:
                os.environ["TUTTI_TEST_SLOWDOWN"] = str(args.slowdown)
            got = run_once(name, root, takes, args.database, lease)
            os.environ.pop("TUTTI_BENCH_WAIT", None)
            if isinstance(got, str):
                skipped.append(got)
                continue
            (voids if got.void else outcomes).append(got)
            if args.verbose or not got.clean:
                print(f"{time.strftime('%H:%M:%S')} {name}{tag} run {k + 1}: lost {got.lost} "
                      f"doubled {got.doubled} temp {got.temp_files} {got.seconds:.1f} s "
                      f"{got.notes}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
    rows = [(name, lease, outcomes, skipped[0] if skipped else None)
            for name, (lease, outcomes, skipped, _voids) in results.items()]
    void = {name: len(voids) for name, (_l, _o, _s, voids) in results.items() if voids}

    print(f"\nFaults with real processes ({args.database}, Redis on its own port, "
          f"`tutti worker` / `tutti serve` subprocesses), {time.monotonic() - started:.0f} s"
          f"{', slowdown ' + format(args.slowdown, 'g') if args.slowdown != 1 else ''}"
          f"{'; stopped early: the runs done so far' if interrupted else ''}")
    header = (f"{'fault':<22} {'lease s':>7} {'runs':>4} {'clips lost':>10} "
              f"{'renders doubled':>15} {'temp left':>9} {'recovery s med/max':>18}")
    print(header)
    print("-" * len(header))
    for name, lease, outcomes, skipped in rows:
        if skipped:
            print(f"{name:<22} {lease:>7} {'-':>4}  skipped: {skipped}")
            continue
        seconds = [o.seconds for o in outcomes]
        recovery = f"{statistics.median(seconds):.1f}/{max(seconds):.1f}" if seconds else "-"
        print(f"{name:<22} {lease:>7} {len(outcomes):>4} {sum(o.lost for o in outcomes):>10} "
              f"{sum(o.doubled for o in outcomes):>15} "
              f"{sum(o.temp_files for o in outcomes):>9} {recovery:>18}")
    if void:
        print("void runs (the fault's moment never came: the first worker did not start the "
              "work in time; not counted above): " + ", ".join(f"{n} {c}" for n, c in
                                                               void.items()))
    bad = sum(not o.clean for _n, _l, outcomes, _s in rows if "(peer)" not in _n
              for o in outcomes)
    print(f"\ngoal: 0 clips lost, 0 renders doubled, 0 temp files left over every run: "
          f"{'met' if not bad else f'{bad} run(s) not clean'}")
    return 0
