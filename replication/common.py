"""What the replication test, its workload processes and the measurements share.

Everything goes through Debian's stdlib ``sqlite3`` (which can load extensions) and raw SQL
calls to the honker extension: no binding is involved, so a failure here is the extension's
or Litestream's, never a wrapper's.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

HERE = Path(__file__).resolve().parent

# The business tables of the workload. Effects carry no UNIQUE constraint on purpose: a double
# effect must be visible to the checks, not refused by the schema.
BUSINESS_SCHEMA = """
CREATE TABLE orders (
    id         INTEGER PRIMARY KEY,
    total      INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE effects (
    order_id INTEGER NOT NULL,
    job_id   INTEGER NOT NULL,
    worker   TEXT    NOT NULL,
    token    INTEGER NOT NULL,
    done_ms  INTEGER NOT NULL
);
CREATE INDEX effects_by_order ON effects (order_id);
CREATE TABLE stream_effects (
    consumer TEXT    NOT NULL,
    "offset" INTEGER NOT NULL,
    order_id INTEGER NOT NULL
);
CREATE TABLE cron_effects (
    schedule TEXT    NOT NULL,
    fire_ms  INTEGER NOT NULL,
    job_id   INTEGER NOT NULL
);
CREATE TABLE lock_log (
    token       INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    acquired_ms INTEGER NOT NULL
);
"""

ORDERS_QUEUE = "orders"
CRON_QUEUE = "cron"
TOPIC = "orders"
CONSUMER = "billing"
ACK_CHANNEL = "acks"
LOCK_NAME = "leader"
LEASE_MS = 1500
# Two schedules, one per misfire policy that matters after a restore: `skip` (the default)
# drops the boundaries the restored file missed, `all` fires every one of them again.
SCHEDULES = {
    "every200_skip": ("@every 200ms", {}),
    "every250_all": ("@every 250ms", {"misfire": "all", "misfire_cap": 100000}),
}


def ext_path() -> str:
    """The extension to load: ``HONKER_EXT_PATH`` (set by ci.sh)."""
    path = os.environ.get("HONKER_EXT_PATH")
    if not path:
        raise SystemExit("HONKER_EXT_PATH is not set (ci.sh sets it)")
    return path


def now_ms() -> int:
    return int(time.time() * 1000)


def connect(path: str | Path, *, setup: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (we write BEGIN/COMMIT ourselves) with honker loaded."""
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
    conn.enable_load_extension(True)
    conn.load_extension(ext_path())
    conn.enable_load_extension(False)
    if setup:
        conn.execute("SELECT honker_setup()")
    return conn


def plain(path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection without the extension (integrity checks, reading the original file)."""
    if read_only:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10.0)
    return sqlite3.connect(str(path), isolation_level=None, timeout=10.0)


def one(conn: sqlite3.Connection, sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args).fetchone()
    return None if row is None else row[0]


def js(conn: sqlite3.Connection, sql: str, *args: Any) -> Any:
    """Run a statement whose single value is JSON text and parse it."""
    value = one(conn, sql, *args)
    return None if value is None else json.loads(value)


def is_busy(e: BaseException) -> bool:
    text = str(e)
    return "database is locked" in text or "busy" in text.lower()


def honker_code(e: BaseException) -> str | None:
    """The stable code of a honker error (``honker: <code>: <message>``), else None."""
    text = str(e)
    if not text.startswith("honker: "):
        return None
    return text.split(": ", 2)[1]


def retry_busy(fn: Callable[[], T], conn: sqlite3.Connection, deadline_s: float = 60.0) -> T:
    """Run a transaction body, rolling back and retrying while SQLite reports busy."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not is_busy(e) or time.monotonic() > end:
                raise
            time.sleep(0.01)


def init_db(path: Path) -> None:
    """A fresh honker file with the business tables, the queues and the cron schedules."""
    conn = connect(path)
    conn.executescript(BUSINESS_SCHEMA)
    # Enough attempts that the worker's deliberate retries never dead-letter an order.
    conn.execute(
        "SELECT honker_queue_configure(?, ?)", (ORDERS_QUEUE, json.dumps({"max_attempts": 1000}))
    )
    for name, (expr, opts) in SCHEDULES.items():
        conn.execute(
            "SELECT honker_schedule(?, ?, ?, ?, ?)",
            (name, expr, CRON_QUEUE, json.dumps({"schedule": name}), json.dumps(opts)),
        )
    conn.close()


class Litestream:
    """One ``litestream replicate`` process for one database, to a local ``file://`` replica."""

    def __init__(self, binary: str, db: Path, replica: Path, log: Path, sync_interval: str = "1s"):
        self.binary = binary
        self.db = db
        self.replica = replica
        self.log = log
        self.config = db.parent / "litestream.yml"
        self.config.write_text(
            "dbs:\n"
            f"  - path: {db}\n"
            "    replica:\n"
            f"      url: file://{replica}\n"
            f"      sync-interval: {sync_interval}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "replicate", "-config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_replicating(self, timeout_s: float = 30.0) -> None:
        """Until the replica holds a first LTX file (the initial snapshot)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"litestream exited with {self.proc.returncode}; see {self.log}")
            if any(self.replica.rglob("*.ltx")):
                return
            time.sleep(0.05)
        raise RuntimeError(f"litestream wrote no LTX file in {timeout_s}s; see {self.log}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """A clean stop (SIGTERM), waiting for the process to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def txids(self) -> list[str]:
        """The max txid of every level-0 LTX file in the replica, oldest first."""
        out = subprocess.run(
            [self.binary, "ltx", "-json", f"file://{self.replica}"],
            check=True,
            capture_output=True,
        ).stdout
        return [f["max_txid"] for f in json.loads(out)]

    def restore(self, out: Path, txid: str | None = None) -> subprocess.CompletedProcess[bytes]:
        cmd = [self.binary, "restore", "-o", str(out)]
        if txid is not None:
            cmd += ["-txid", txid]
        cmd.append(f"file://{self.replica}")
        return subprocess.run(cmd, capture_output=True, timeout=120)
