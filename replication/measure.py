"""What Litestream changes for a honker file, measured on this machine: what ``honker info``
says, an application's ``PRAGMA wal_checkpoint(TRUNCATE)``, WAL growth, and idle wakes.

Usage: ``python3 measure.py --litestream PATH [--honker PATH] [--seconds S]``. Prints one
``PASS``/``FAIL`` line per behavioural check and ``measure:`` lines with the figures; closes with
``N passed, M failed``. The figures are reported, never asserted: they depend on the machine.
The checks are behaviour: what ``honker_info()`` and ``honker info`` say, that the checkpoint's
result row is what SQLite documents for a checkpoint blocked by a reader, and that honker's own
functions run on a file holding Litestream's tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c
from test_restore import Results, check

HERE = Path(__file__).resolve().parent


def spawn(role: list[str], db: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "workload.py"), role[0], str(db), *role[1:]],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def kill(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()


def fresh(base: Path, name: str, ls_bin: str) -> tuple[Path, c.Litestream]:
    d = base / name
    d.mkdir()
    db = d / "app.db"
    c.init_db(db)
    return db, c.Litestream(ls_bin, db, d / "replica", d / "litestream.log")


def info_checks(res: Results, base: Path, ls_bin: str, honker: str) -> None:
    db, ls = fresh(base, "info", ls_bin)
    conn = c.connect(db)
    before = c.js(conn, "SELECT honker_info()")
    ls.start()
    try:
        ls.wait_replicating()
        after = c.js(conn, "SELECT honker_info()")
        cli = subprocess.run([honker, "info", "--db", str(db)], capture_output=True, text=True)

        def sql_info() -> str:
            check(before["litestream"] is False and before["litestream_note"] is None, f"{before}")
            check(after["litestream"] is True, f"{after}")
            note = after["litestream_note"] or ""
            for words in ["TRUNCATE", "RESTART", "sync interval", "acked"]:
                check(words in note, f"the note does not mention {words!r}: {note}")
            return f"litestream false before, true with Litestream running; note: {note}"

        def cli_info() -> str:
            check(cli.returncode == 0, f"honker info exited {cli.returncode}: {cli.stderr}")
            lines = [ln for ln in cli.stdout.splitlines() if ln.startswith("litestream")]
            check(
                len(lines) == 1 and "TRUNCATE" in lines[0], f"no litestream line in:\n{cli.stdout}"
            )
            return lines[0]

        def functions_ignore_tables() -> str:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE name LIKE '\\_litestream%' ESCAPE '\\'"
                )
            ]
            check(
                set(names) >= {"_litestream_seq", "_litestream_lock"}, f"Litestream tables: {names}"
            )
            seq = conn.execute("SELECT * FROM _litestream_seq").fetchall()
            ran = []
            for sql in [
                "SELECT honker_migrate()",
                "SELECT honker_info()",
                "SELECT honker_queue_stats('orders')",
                "SELECT honker_streams()",
                "SELECT honker_schedules()",
                "SELECT honker_consumers('orders')",
                "SELECT honker_cron_tick()",
                "SELECT honker_notify_prune()",
                "SELECT honker_stream_trim('orders')",
                "SELECT honker_dead_purge('orders')",
                "SELECT honker_enqueue('orders', '{\"order\": 0}')",
                "SELECT honker_claim('orders', 'm', 10)",
            ]:
                conn.execute(sql).fetchall()
                ran.append(sql.split("(")[0].removeprefix("SELECT "))
            streams = c.js(conn, "SELECT honker_streams()")
            check(all(not s["topic"].startswith("_litestream") for s in streams), f"{streams}")
            # Litestream may have advanced its own row meanwhile; honker never deletes it.
            check(
                len(conn.execute("SELECT * FROM _litestream_seq").fetchall()) == len(seq),
                "row count",
            )
            return f"{len(ran)} functions ran with {names} present"

        res.run("live", "honker_info_reports_litestream", sql_info)
        res.run("live", "honker_info_cli_reports_litestream", cli_info)
        res.run("live", "functions_ignore_litestream_tables", functions_ignore_tables)
    finally:
        ls.kill9()
        conn.close()


def checkpoint(res: Results, base: Path, ls_bin: str, with_ls: bool, mode: str) -> dict[str, Any]:
    """An application's ``PRAGMA wal_checkpoint(<mode>)`` (busy timeout 5 s, as honker_setup
    sets it) while a writer commits every ~2 ms."""
    name = f"ckpt-{mode.lower()}-{'ls' if with_ls else 'plain'}"
    db, ls = fresh(base, name, ls_bin)
    if with_ls:
        ls.start()
        ls.wait_replicating()
    log = db.parent / "writer.log"
    w = spawn(["writer"], db, log)
    try:
        time.sleep(2.0)
        conn = c.connect(db)
        wal_before = os.path.getsize(str(db) + "-wal")
        t0 = c.now_ms()
        row = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        t1 = c.now_ms()
        wal_after = os.path.getsize(str(db) + "-wal")
        time.sleep(1.0)
    finally:
        kill([w])
        ls.kill9()
    commits, busy = [], []
    for line in log.read_text().splitlines():
        kind, _, ms = line.partition(" ")
        if kind == "c":
            commits.append(int(ms))
        elif kind == "b":
            busy.append(int(ms))
    before = [t for t in commits if t0 - 1500 <= t < t0]
    during = [t for t in commits if t0 <= t <= t1]
    dur = max(t1 - t0, 1)
    m = {
        "case": name,
        "wait_ms": t1 - t0,
        "result": list(row),
        "wal_before": wal_before,
        "wal_after": wal_after,
        "commits_per_s_before": round(len(before) / 1.5),
        "commits_per_s_during": round(len(during) * 1000 / dur),
        "busy_errors": len([t for t in busy if t0 <= t <= t1 + 100]),
    }
    print(f"measure: checkpoint {json.dumps(m)}", flush=True)

    def result_row() -> str:
        busy_flag, log_frames, done = row
        if mode == "PASSIVE":
            # PASSIVE never waits for readers: it copies what it can and returns busy = 0.
            check(busy_flag == 0, f"result {list(row)}: PASSIVE reported busy")
        elif with_ls:
            # Litestream keeps a read transaction open, so a FULL, RESTART or TRUNCATE
            # checkpoint waits its busy timeout for it (blocking writers meanwhile), then gives
            # up without resetting or truncating the WAL: SQLite reports busy = 1.
            check(busy_flag == 1, f"result {list(row)}: expected busy = 1 under Litestream")
            check(wal_after > 0, "the WAL was truncated under Litestream")
        else:
            check(busy_flag == 0 and done == log_frames, f"result {list(row)} without Litestream")
        return f"result (busy, log, checkpointed) = {list(row)} after {t1 - t0} ms"

    res.run(name, "checkpoint_result", result_row)
    return m


def wal_growth(base: Path, ls_bin: str, with_ls: bool, seconds: float) -> dict[str, Any]:
    name = f"wal-{'ls' if with_ls else 'plain'}"
    db, ls = fresh(base, name, ls_bin)
    if with_ls:
        ls.start()
        ls.wait_replicating()
    roles = [["producer"], ["worker", "worker-a"], ["worker", "worker-b"], ["consumer"], ["ticker"]]
    procs = [spawn(r, db, db.parent / f"{'_'.join(r)}.log") for r in roles]
    sizes: list[int] = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                sizes.append(os.path.getsize(str(db) + "-wal"))
            except FileNotFoundError:
                sizes.append(0)
            time.sleep(0.05)
    finally:
        kill(procs)
        ls.kill9()
    conn = c.plain(db)
    orders = c.one(conn, "SELECT count(*) FROM orders")
    conn.close()
    m = {
        "case": name,
        "seconds": seconds,
        "orders": orders,
        "wal_max_mb": round(max(sizes) / 1e6, 1),
        "wal_final_mb": round(sizes[-1] / 1e6, 1),
        "db_mb": round(os.path.getsize(db) / 1e6, 1),
    }
    print(f"measure: wal {json.dumps(m)}", flush=True)
    return m


def idle_wakes(base: Path, ls_bin: str, with_ls: bool, seconds: float) -> dict[str, Any]:
    """Epoch advances on an idle file: every one is a wake a sleeping worker or listener gets."""
    name = f"idle-{'ls' if with_ls else 'plain'}"
    db, ls = fresh(base, name, ls_bin)
    if with_ls:
        ls.start()
        ls.wait_replicating()
    conn = c.connect(db)
    wakes = 0
    try:
        epoch = c.one(conn, "SELECT honker_epoch()")
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            now = c.one(conn, "SELECT honker_wait(?, ?)", epoch, int(left * 1000) + 1)
            if now > epoch:
                wakes += 1
                epoch = now
    finally:
        conn.close()
        ls.kill9()
    m = {"case": name, "seconds": seconds, "wakes": wakes}
    print(f"measure: idle {json.dumps(m)}", flush=True)
    return m


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--litestream", required=True)
    ap.add_argument("--honker", required=True, help="the honker CLI binary")
    ap.add_argument("--seconds", type=float, default=8.0, help="workload time per WAL case")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="honker-litestream-measure-"))
    res = Results()
    try:
        info_checks(res, base, args.litestream, args.honker)
        for with_ls in (False, True):
            checkpoint(res, base, args.litestream, with_ls, "TRUNCATE")
        for mode in ("RESTART", "FULL", "PASSIVE"):
            checkpoint(res, base, args.litestream, True, mode)
        for with_ls in (False, True):
            wal_growth(base, args.litestream, with_ls, args.seconds)
        for with_ls in (False, True):
            idle_wakes(base, args.litestream, with_ls, 3.0)
    finally:
        if not res.failures:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
