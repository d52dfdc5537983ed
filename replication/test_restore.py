"""Replicate a honker file with Litestream under a mixed workload, kill everything with SIGKILL
at random points, restore many times, and check the invariants on every restored file.

Usage: ``python3 test_restore.py --litestream PATH [--deep] [--rounds N] [--seed S]
[--workdir DIR]``. Prints one line per check (``PASS``/``FAIL <restore> <check>: <detail>``),
the observations (data lost per restore, acks that run again, cron refires), and closes with
``N passed, M failed``. Exits 1 on any failure.

One round: a fresh file (business tables, an ``orders`` queue, a stream, two cron schedules),
``litestream replicate`` to a local ``file://`` replica, the six workload processes of
``workload.py``, then

1. a restore while everything runs (``live``);
2. one kill scenario, chosen in turn: Litestream first, writers first, all at once, Litestream
   killed and restarted, or the writers killed and Litestream stopped cleanly;
3. a restore of the newest replicated state (``latest``) and one or more at an earlier
   Litestream transaction (``pit``, point in time);
4. once every process of the round is dead, the original file is read (it is the history the
   restored files must be a prefix of) and every restored file is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common as c
import workload

ROLES = [
    ["producer"],
    ["worker", "worker-a"],
    ["worker", "worker-b"],
    ["consumer"],
    ["ticker"],
    ["listener"],
]
SCENARIOS = ["litestream_first", "writers_first", "all_at_once", "litestream_restart", "clean_stop"]


class Results:
    def __init__(self, quiet: bool = False) -> None:
        self.passed = 0
        self.failed = 0
        self.failures: list[str] = []
        self.failed_names: set[str] = set()
        self.quiet = quiet

    def record(self, label: str, name: str, ok: bool, detail: str = "") -> None:
        line = f"{'PASS' if ok else 'FAIL'} {label} {name}" + (f": {detail}" if detail else "")
        if not self.quiet:
            print(line, flush=True)
        if not ok:
            self.failed_names.add(name)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(line)

    def run(self, label: str, name: str, fn: Callable[[], str | None]) -> bool:
        try:
            detail = fn() or ""
        except Exception as e:
            tb = traceback.format_exc(limit=3).strip().splitlines()
            self.record(
                label, name, False, f"{type(e).__name__}: {e} [{tb[-3] if len(tb) > 2 else ''}]"
            )
            return False
        self.record(label, name, True, detail)
        return True


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


# ---------------------------------------------------------------------------------------------
# Reading a file's state


@dataclass
class State:
    orders: dict[int, int]  # id -> total
    effects: list[tuple[int, int, int]]  # (order_id, job_id, token)
    live: dict[int, dict[str, Any]]  # job id -> {queue, state, token, order, dedup_key, claims}
    dead: int
    events: dict[int, int]  # offset -> order id
    committed: int | None
    stream_effects: list[tuple[int, int]]  # (offset, order id)
    fires: dict[tuple[str, int], int | None]  # (schedule, fire_ms) -> job id
    cron_effects: list[tuple[str, int, int]]
    lock_log: list[int]
    lock_token: int | None
    ack_notes: list[int]  # order ids of the `acks` notifications
    max_order_ms: int | None
    seq: dict[str, int] = field(default_factory=dict)  # sqlite_sequence
    litestream_rows: list[Any] = field(default_factory=list)


def read_state(conn: sqlite3.Connection) -> State:
    q = conn.execute
    live = {}
    for jid, queue, state, token, payload, dedup, claims in q(
        "SELECT id, queue, state, lease_token, payload, dedup_key, claims FROM honker_jobs"
    ):
        p = json.loads(payload)
        live[jid] = {
            "queue": queue,
            "state": state,
            "token": token,
            "order": p.get("order"),
            "dedup_key": dedup,
            "claims": claims,
        }
    has_ls = bool(c.one(conn, "SELECT count(*) FROM sqlite_master WHERE name = '_litestream_seq'"))
    return State(
        orders=dict(q("SELECT id, total FROM orders")),
        effects=[tuple(r) for r in q("SELECT order_id, job_id, token FROM effects")],
        live=live,
        dead=c.one(conn, "SELECT count(*) FROM honker_dead"),
        events={
            off: json.loads(p)["order"]
            for off, p in q(
                'SELECT "offset", payload FROM honker_streams WHERE topic = ?', (c.TOPIC,)
            )
        },
        committed=c.one(
            conn,
            "SELECT committed FROM honker_consumers WHERE consumer = ? AND topic = ?",
            c.CONSUMER,
            c.TOPIC,
        ),
        stream_effects=[tuple(r) for r in q('SELECT "offset", order_id FROM stream_effects')],
        fires={(s, f): j for s, f, j in q("SELECT schedule, fire_ms, job_id FROM honker_fires")},
        cron_effects=[tuple(r) for r in q("SELECT schedule, fire_ms, job_id FROM cron_effects")],
        lock_log=[r[0] for r in q("SELECT token FROM lock_log ORDER BY rowid")],
        lock_token=c.one(conn, "SELECT token FROM honker_locks WHERE name = ?", c.LOCK_NAME),
        ack_notes=[
            json.loads(p)["order"]
            for (p,) in q(
                "SELECT payload FROM honker_notifications WHERE channel = ?", (c.ACK_CHANNEL,)
            )
        ],
        max_order_ms=c.one(conn, "SELECT max(created_ms) FROM orders"),
        seq=dict(q("SELECT name, seq FROM sqlite_sequence")),
        litestream_rows=list(q("SELECT * FROM _litestream_seq")) if has_ls else [],
    )


# ---------------------------------------------------------------------------------------------
# The checks of one restored file


@dataclass
class Restore:
    label: str
    path: Path
    scenario: str
    proc: subprocess.CompletedProcess[bytes]


class RestoreChecks:
    """Every invariant of one restored file, in order: the read-only ones first, then the ones
    that drive the restored file forward (a tick, a fresh worker and consumer)."""

    def __init__(self, r: Restore, orig: State, results: Results, obs: dict[str, Any]):
        self.r = r
        self.orig = orig
        self.res = results
        self.obs = obs
        self.conn: sqlite3.Connection | None = None
        self.rs: State | None = None
        self.claimed: list[dict[str, Any]] | None = None

    def db(self) -> sqlite3.Connection:
        check(self.conn is not None, "not run: the extension did not load")
        assert self.conn is not None
        return self.conn

    def state(self) -> State:
        check(self.rs is not None, "not run: the restored file could not be read")
        assert self.rs is not None
        return self.rs

    def run_all(self) -> None:
        label = self.r.label
        for name in [
            "restore_ok",
            "integrity",
            "loads",
            "orders_live_xor_acked",
            "ack_notify_atomic",
            "stream_offsets",
            "stream_effects_once",
            "prefix_of_original",
            "cron_fired_once",
            "dedup_keys_hold",
            "lock_tokens_monotonic",
            "cron_no_refire_after_restore",
            "fencing_after_reclaim",
            "fresh_worker_drains",
            "litestream_tables_ignored",
        ]:
            self.res.run(label, name, getattr(self, name))
        if self.conn is not None:
            self.conn.close()

    # -- read-only -------------------------------------------------------------------------

    def restore_ok(self) -> str:
        p = self.r.proc
        check(p.returncode == 0, f"litestream restore exited {p.returncode}: {p.stderr[-400:]!r}")
        check(self.r.path.is_file(), "no restored file")
        return f"{self.r.path.stat().st_size} bytes"

    def integrity(self) -> str:
        conn = c.plain(self.r.path)
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        conn.close()
        check(rows == [("ok",)], f"integrity_check: {rows[:5]}")
        return "ok"

    def loads(self) -> str:
        self.conn = c.connect(self.r.path)
        info = c.js(self.conn, "SELECT honker_info()")
        check(info["schema_version"] == info["schema_supported"], f"schema {info}")
        check(info["journal_mode"] == "wal", f"journal mode {info['journal_mode']}")
        has_ls = bool(
            c.one(self.conn, "SELECT count(*) FROM sqlite_master WHERE name = '_litestream_seq'")
        )
        check(info["litestream"] is has_ls, f"litestream {info['litestream']} but table {has_ls}")
        check((info["litestream_note"] is not None) is has_ls, "litestream_note")
        self.rs = read_state(self.conn)
        return f"schema {info['schema_version']}, litestream tables carried over: {has_ls}"

    def orders_live_xor_acked(self) -> str:
        rs = self.state()
        live_by_order: dict[int, int] = {}
        for j in rs.live.values():
            if j["queue"] == c.ORDERS_QUEUE:
                live_by_order[j["order"]] = live_by_order.get(j["order"], 0) + 1
        eff_by_order: dict[int, int] = {}
        for oid, _, _ in rs.effects:
            eff_by_order[oid] = eff_by_order.get(oid, 0) + 1
        bad = []
        for oid in rs.orders:
            n_live, n_eff = live_by_order.get(oid, 0), eff_by_order.get(oid, 0)
            if (n_live, n_eff) not in ((1, 0), (0, 1)):
                bad.append((oid, n_live, n_eff))
        orphans = (set(live_by_order) | set(eff_by_order)) - set(rs.orders)
        check(not bad, f"orders with (live jobs, effects) not (1,0)/(0,1): {bad[:10]}")
        check(not orphans, f"jobs or effects of orders that do not exist: {sorted(orphans)[:10]}")
        check(rs.dead == 0, f"{rs.dead} dead letters")
        return f"{len(rs.orders)} orders: {len(live_by_order)} live, {len(eff_by_order)} acked"

    def ack_notify_atomic(self) -> str:
        rs = self.state()
        effects = sorted(o for o, _, _ in rs.effects)
        check(sorted(rs.ack_notes) == effects, "the `acks` notifications differ from the effects")
        return f"{len(effects)} notifications, one per effect"

    def stream_offsets(self) -> str:
        rs = self.state()
        newest = max(rs.events, default=0)
        committed = rs.committed or 0
        check(committed <= newest, f"committed offset {committed} > newest event {newest}")
        per_order = sorted(rs.events.values())
        check(per_order == sorted(rs.orders), "events are not one per order")
        return f"committed {committed} <= newest {newest}"

    def stream_effects_once(self) -> str:
        rs = self.state()
        committed = rs.committed or 0
        want = sorted((off, o) for off, o in rs.events.items() if off <= committed)
        got = sorted(rs.stream_effects)
        check(got == want, f"{len(got)} stream effects, {len(want)} events up to {committed}")
        return f"{len(got)} effects, each event up to the offset once"

    def prefix_of_original(self) -> str:
        rs, orig = self.state(), self.orig
        check(
            all(orig.orders.get(k) == v for k, v in rs.orders.items()),
            "an order not in the original",
        )
        check(set(rs.effects) <= set(orig.effects), "an effect the original does not have")
        check(
            all(orig.events.get(k) == v for k, v in rs.events.items()),
            "an event not in the original",
        )
        check(
            set(rs.stream_effects) <= set(orig.stream_effects),
            "a stream effect not in the original",
        )
        check(set(rs.fires) <= set(orig.fires), "a cron fire not in the original")
        check(rs.lock_log == orig.lock_log[: len(rs.lock_log)], "lock tokens not a prefix")
        check(
            (rs.committed or 0) <= (orig.committed or 0), "committed offset ahead of the original"
        )
        # Observations: what the restore lost, and which acks will run again.
        acked_orig = {o for o, _, _ in orig.effects}
        live_orders = {j["order"] for j in rs.live.values() if j["queue"] == c.ORDERS_QUEUE}
        again = len(live_orders & acked_orig)
        lost = len(orig.orders) - len(rs.orders)
        lag = (orig.max_order_ms or 0) - (rs.max_order_ms or orig.max_order_ms or 0)
        self.obs.update(lost_orders=lost, acked_again=again, lag_ms=lag)
        return (
            f"lost {lost} of {len(orig.orders)} orders ({lag} ms of commits); "
            f"{again} acked jobs run again"
        )

    def cron_fired_once(self) -> str:
        rs = self.state()
        keys = [(s, f) for s, f, _ in rs.cron_effects]
        check(len(keys) == len(set(keys)), "a cron boundary has two effects")
        for s, f, j in rs.cron_effects:
            check(rs.fires.get((s, f)) == j, f"cron effect {s}@{f} job {j} has no such fire")
        live_cron = {jid for jid, j in rs.live.items() if j["queue"] == c.CRON_QUEUE}
        done = {j for _, _, j in rs.cron_effects}
        for key, jid in rs.fires.items():
            check(jid is not None, f"fire {key} has no job")
            check(
                (jid in live_cron) != (jid in done),
                f"fire {key}: job {jid} live and acked, or neither",
            )
        return f"{len(rs.fires)} fires, {len(done)} acked once, {len(live_cron)} pending"

    def dedup_keys_hold(self) -> str:
        conn, rs = self.db(), self.state()
        before = c.one(conn, "SELECT count(*) FROM honker_jobs")
        n = 0
        for jid, j in rs.live.items():
            if j["queue"] != c.ORDERS_QUEUE:
                continue
            got = c.one(
                conn,
                "SELECT honker_enqueue(?, ?, ?)",
                c.ORDERS_QUEUE,
                json.dumps({"order": j["order"]}),
                json.dumps({"dedup_key": j["dedup_key"]}),
            )
            check(got == jid, f"enqueue with dedup key {j['dedup_key']} gave job {got}, not {jid}")
            n += 1
        after = c.one(conn, "SELECT count(*) FROM honker_jobs")
        check(after == before, f"{after - before} duplicate jobs")
        return f"{n} re-enqueues returned the live job"

    def lock_tokens_monotonic(self) -> str:
        conn, rs = self.db(), self.state()
        if rs.lock_log:
            check(rs.lock_token == max(rs.lock_log), "lock token and its log disagree")
            check(rs.lock_log == sorted(set(rs.lock_log)), "lock tokens not strictly increasing")
        end = time.monotonic() + 10
        token = None
        while token is None and time.monotonic() < end:
            token = workload.lock_turn(conn, "after-restore")
            if token is None:
                time.sleep(0.05)
        check(token is not None, "could not take the lock after its lease ran out")
        assert token is not None
        check(token > (rs.lock_token or 0), f"token {token} not above {rs.lock_token}")
        reissued = token in self.orig.lock_log
        self.obs["lock_token_reissued"] = reissued
        return (
            f"new token {token} > {rs.lock_token}; "
            f"already handed out before the restore: {reissued}"
        )

    # -- driving the restored file forward ---------------------------------------------------

    def cron_no_refire_after_restore(self) -> str:
        conn, rs, orig = self.db(), self.state(), self.orig
        now = c.now_ms()
        fired = c.js(conn, "SELECT honker_cron_tick(?)", now)
        fired_keys = {(f["schedule"], f["fire_ms"]) for f in fired}
        again = fired_keys & set(rs.fires)
        check(not again, f"boundaries the restored file had fired fired again: {sorted(again)[:5]}")
        # At-least-once: under misfire = 'all' every boundary the restore lost fires again.
        lost_all = {
            k for k in set(orig.fires) - set(rs.fires) if k[0] == "every250_all" and k[1] <= now
        }
        check(
            lost_all <= fired_keys,
            f"lost 'all' boundaries not fired again: {sorted(lost_all - fired_keys)[:5]}",
        )
        # Cron jobs (old and new) run, each boundary's effect exactly once.
        end = time.monotonic() + 30
        while time.monotonic() < end:
            workload.run_cron_jobs(conn, "cron-after-restore")
            if not c.one(conn, "SELECT count(*) FROM honker_jobs WHERE queue = ?", c.CRON_QUEUE):
                break
            time.sleep(0.05)
        keys = [
            (s, f) for s, f, _ in conn.execute("SELECT schedule, fire_ms, job_id FROM cron_effects")
        ]
        check(len(keys) == len(set(keys)), "a boundary has two effects after the restore")
        fires = set(conn.execute("SELECT schedule, fire_ms FROM honker_fires").fetchall())
        check(set(keys) == fires, f"{len(fires)} fires but {len(set(keys))} effects after draining")
        refired = fired_keys & set(orig.fires)
        by_sched = {s: sum(1 for k in refired if k[0] == s) for s in c.SCHEDULES}
        self.obs["cron_refired"] = by_sched
        return (
            f"tick fired {len(fired_keys)}; boundaries the original had fired and the restore "
            f"lost, fired again (at-least-once): {by_sched}"
        )

    def fencing_after_reclaim(self) -> str:
        """A fresh worker reclaims every live order; each stale token from the original history
        (the lease it was acked under, or the lease it was running under at the kill) is refused."""
        conn, orig = self.db(), self.orig
        stale: dict[int, set[int]] = {}
        for _, jid, tok in orig.effects:
            stale.setdefault(jid, set()).add(tok)
        for jid, j in orig.live.items():
            if j["token"] is not None:
                stale.setdefault(jid, set()).add(j["token"])
        self.claimed = []
        end = time.monotonic() + 30
        while time.monotonic() < end:
            live = c.one(conn, "SELECT count(*) FROM honker_jobs WHERE queue = ?", c.ORDERS_QUEUE)
            if len(self.claimed) >= live:
                break
            got = c.js(
                conn, "SELECT honker_claim_wait(?, 'fresh', 1000, 60000, 200)", c.ORDERS_QUEUE
            )
            self.claimed += got
        live = c.one(conn, "SELECT count(*) FROM honker_jobs WHERE queue = ?", c.ORDERS_QUEUE)
        check(len(self.claimed) == live, f"claimed {len(self.claimed)} of {live} live jobs")
        refused = same_count = 0
        for job in self.claimed:
            for tok in stale.get(job["id"], ()):
                check(
                    tok != job["lease_token"],
                    f"job {job['id']}: lease token {tok} handed out twice",
                )
                if tok >> 40 == job["lease_token"] >> 40:
                    same_count += 1
                try:
                    conn.execute("SELECT honker_ack(?, ?)", (job["id"], tok))
                except sqlite3.OperationalError as e:
                    check(c.honker_code(e) == "queue.lease_lost", f"stale ack: {e}")
                    refused += 1
                else:
                    raise AssertionError(f"job {job['id']}: stale token {tok} acked it")
        self.obs["stale_refused"] = refused
        return (
            f"{len(self.claimed)} reclaimed; {refused} stale tokens refused "
            f"({same_count} shared the claim count, told apart by the random bits)"
        )

    def fresh_worker_drains(self) -> str:
        conn = self.db()
        check(self.claimed is not None, "not run: the reclaim did not run")
        assert self.claimed is not None
        workload.ack_jobs(conn, "fresh", self.claimed, flaky=False)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            jobs = c.js(
                conn, "SELECT honker_claim_wait(?, 'fresh', 100, 60000, 100)", c.ORDERS_QUEUE
            )
            if jobs:
                workload.ack_jobs(conn, "fresh", jobs, flaky=False)
            elif not c.one(
                conn, "SELECT count(*) FROM honker_jobs WHERE queue = ?", c.ORDERS_QUEUE
            ):
                break
        while workload.consume(conn, c.CONSUMER, 0):
            pass
        st = read_state(conn)
        effects = sorted(o for o, _, _ in st.effects)
        check(effects == sorted(st.orders), "after draining, orders and effects are not one to one")
        check(not [j for j in st.live.values() if j["queue"] == c.ORDERS_QUEUE], "order jobs left")
        check(
            sorted(st.stream_effects) == sorted(st.events.items()), "stream effects not once each"
        )
        check((st.committed or 0) == max(st.events, default=0), "consumer did not catch up")
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        check(rows == [("ok",)], f"integrity_check after draining: {rows[:5]}")
        # Ids after a restore continue from the restored file: those the lost history handed
        # out are handed out again (an observation the README documents).
        nid = c.one(conn, "SELECT honker_notify('probe', '{}')")
        off = c.one(conn, "SELECT honker_publish('probe', '{}')")
        self.obs["ids_reused"] = nid <= self.orig.seq.get("honker_notifications", 0) or off <= max(
            self.orig.events, default=0
        )
        return f"{len(st.orders)} orders acked once each, {len(st.events)} events applied once"

    def litestream_tables_ignored(self) -> str:
        conn, rs = self.db(), self.state()
        for sql in [
            "SELECT honker_migrate()",
            "SELECT honker_queue_stats('orders')",
            "SELECT honker_streams()",
            "SELECT honker_schedules()",
            "SELECT honker_consumers('orders')",
            "SELECT honker_notify_prune()",
            "SELECT honker_stream_trim('orders')",
            "SELECT honker_dead_purge('orders')",
        ]:
            conn.execute(sql).fetchall()
        has_ls = bool(
            c.one(conn, "SELECT count(*) FROM sqlite_master WHERE name = '_litestream_seq'")
        )
        after = list(conn.execute("SELECT * FROM _litestream_seq")) if has_ls else []
        check(after == rs.litestream_rows, "honker changed _litestream_seq")
        return "every listing and retention function ran; _litestream_seq untouched"


# ---------------------------------------------------------------------------------------------
# One round


class Round:
    def __init__(
        self, k: int, scenario: str, rng: random.Random, base: Path, ls_bin: str, pits: int
    ):
        self.k = k
        self.scenario = scenario
        self.rng = rng
        self.dir = base / f"round{k:02d}"
        self.dir.mkdir(parents=True)
        self.db = self.dir / "app.db"
        self.pits = pits
        self.ls = c.Litestream(ls_bin, self.db, self.dir / "replica", self.dir / "litestream.log")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restores: list[Restore] = []

    def start_workload(self) -> None:
        here = Path(__file__).resolve().parent
        for role in ROLES:
            with open(self.dir / f"{'_'.join(role)}.log", "wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(here / "workload.py"),
                            role[0],
                            str(self.db),
                            *role[1:],
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def kill_writers(self) -> None:
        procs = list(self.procs)
        self.rng.shuffle(procs)
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()

    def writers_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"workload process {p.args!r} exited early with {p.returncode}")

    def orders(self) -> int:
        conn = c.plain(self.db)
        try:
            return int(c.one(conn, "SELECT count(*) FROM orders"))
        finally:
            conn.close()

    def restore(self, label: str, txid: str | None = None) -> None:
        out = self.dir / f"{label}.db"
        proc = self.ls.restore(out, txid)
        self.restores.append(
            Restore(f"r{self.k:02d}-{self.scenario}-{label}", out, self.scenario, proc)
        )

    def sleep(self, lo: float, hi: float) -> None:
        time.sleep(self.rng.uniform(lo, hi))

    def run(self) -> None:
        c.init_db(self.db)
        self.ls.start()
        self.ls.wait_replicating()
        self.start_workload()
        end = time.monotonic() + 30
        while self.orders() < 150 and time.monotonic() < end:
            time.sleep(0.1)
        # Past one sync interval, so the live restore holds orders too.
        self.sleep(1.2, 2.5)
        self.writers_alive()
        self.restore("live")
        self.sleep(0.3, 1.5)
        self.writers_alive()
        s = self.scenario
        if s == "litestream_first":
            self.ls.kill9()
            self.sleep(0.2, 1.5)
            self.kill_writers()
        elif s == "writers_first":
            self.kill_writers()
            self.sleep(0.0, 1.5)
            self.ls.kill9()
        elif s == "all_at_once":
            self.ls.kill9()
            self.kill_writers()
        elif s == "litestream_restart":
            self.ls.kill9()
            self.sleep(0.2, 1.0)
            self.ls.start()
            self.sleep(1.0, 2.5)
            self.ls.kill9()
            self.kill_writers()
        elif s == "clean_stop":
            self.kill_writers()
            self.ls.stop()
        self.restore("latest")
        txids = self.ls.txids()
        # Earlier points in time, skipping the first (the empty file's snapshot) when we can.
        earlier = txids[1:-1] or txids[:-1]
        for i, txid in enumerate(self.rng.sample(earlier, min(self.pits, len(earlier)))):
            self.restore(f"pit{i}-tx{int(txid, 16)}", txid)

    def cleanup(self) -> None:
        self.kill_writers()
        self.ls.kill9()


# Each entry: the check that must catch it, and SQL that breaks exactly that invariant in a copy
# of a restored file. They prove the checks can fail.
SABOTAGE: dict[str, list[str]] = {
    "orders_live_xor_acked": [
        # An acked order loses its effect (and the notification of the same transaction).
        "DELETE FROM honker_notifications WHERE channel = 'acks' AND payload ->> 'order' = "
        "(SELECT order_id FROM effects WHERE rowid = (SELECT min(rowid) FROM effects))",
        "DELETE FROM effects WHERE rowid = (SELECT min(rowid) FROM effects)",
    ],
    "ack_notify_atomic": [
        "DELETE FROM honker_notifications WHERE id = "
        "(SELECT min(id) FROM honker_notifications WHERE channel = 'acks')"
    ],
    "stream_offsets": ["UPDATE honker_consumers SET committed = committed + 1000000"],
    "stream_effects_once": ["INSERT INTO stream_effects SELECT * FROM stream_effects LIMIT 1"],
    "prefix_of_original": ["UPDATE orders SET total = -1 WHERE id = (SELECT min(id) FROM orders)"],
    "cron_fired_once": ["INSERT INTO cron_effects SELECT * FROM cron_effects LIMIT 1"],
}


def negative_controls(rnd: Round, orig: State, res: Results) -> None:
    """Break one invariant in a copy of a restored file and see the matching check fail."""
    src = next(r for r in rnd.restores if r.label.endswith("-latest"))
    label = f"{src.label}-sabotaged"
    for name, statements in SABOTAGE.items():

        def control(name: str = name, statements: list[str] = statements) -> str:
            copy = rnd.dir / f"sabotage-{name}.db"
            shutil.copyfile(src.path, copy)
            conn = c.plain(copy)
            changed = 0
            for sql in statements:
                changed += conn.execute(sql).rowcount
            conn.close()
            check(changed > 0, "the sabotage changed nothing")
            quiet = Results(quiet=True)
            RestoreChecks(Restore(label, copy, src.scenario, src.proc), orig, quiet, {}).run_all()
            check(name in quiet.failed_names, f"{name} did not catch it")
            return f"{name} caught it ({', '.join(sorted(quiet.failed_names))} failed)"

        res.run(label, f"negative_control_{name}", control)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--litestream", required=True)
    ap.add_argument(
        "--deep",
        action="store_true",
        help="20 rounds with 3 point-in-time restores each (default: 5 with 2)",
    )
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    rounds = args.rounds or (20 if args.deep else 5)
    pits = 3 if args.deep else 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    base = args.workdir or Path(tempfile.mkdtemp(prefix="honker-litestream-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"seed {seed}, {rounds} rounds, work directory {base}", flush=True)
    res = Results()
    all_obs: list[tuple[str, dict[str, Any]]] = []
    n_restores = 0
    for k in range(rounds):
        rnd = Round(k, SCENARIOS[k % len(SCENARIOS)], rng, base, args.litestream, pits)
        t0 = time.monotonic()
        try:
            rnd.run()
        except Exception as e:
            res.record(f"r{k:02d}-{rnd.scenario}", "round", False, f"{type(e).__name__}: {e}")
            rnd.cleanup()
            continue
        finally:
            rnd.cleanup()
        conn = c.plain(rnd.db)
        orig = read_state(conn)
        conn.close()
        if k == 0:
            negative_controls(rnd, orig, res)
        for r in rnd.restores:
            obs: dict[str, Any] = {}
            RestoreChecks(r, orig, res, obs).run_all()
            all_obs.append((r.label, obs))
            n_restores += 1
        # The clean stop must have replicated everything that committed.
        if rnd.scenario == "clean_stop":
            latest = next(r for r in rnd.restores if r.label.endswith("-latest"))
            obs = dict(all_obs[[lbl for lbl, _ in all_obs].index(latest.label)][1])
            res.record(
                latest.label,
                "clean_stop_loses_nothing",
                obs.get("lost_orders") == 0 and obs.get("acked_again") == 0,
                f"lost {obs.get('lost_orders')} orders, {obs.get('acked_again')} acks run again",
            )
        print(f"round {k} ({rnd.scenario}) took {time.monotonic() - t0:.1f}s", flush=True)
    print(
        "\nobservations per restore (label: lost orders / ms of commits lost / acks run again / "
        "cron boundaries fired again / lock token reissued / ids reused):"
    )
    for label, o in all_obs:
        print(
            f"  {label}: {o.get('lost_orders')} / {o.get('lag_ms')} / {o.get('acked_again')} / "
            f"{o.get('cron_refired')} / {o.get('lock_token_reissued')} / {o.get('ids_reused')}"
        )
    print(f"\n{n_restores} restores checked")
    if res.failures:
        print("failures:")
        for f in res.failures:
            print("  " + f)
    if not args.keep and not res.failures:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
