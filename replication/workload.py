"""The workload processes the replication test runs against a replicated honker file.

Usage: ``python3 workload.py ROLE DB [NAME]``. Every role runs until it is killed (the test kills
them with SIGKILL at random points, mid-transaction included). Each writes through raw SQL calls
to the extension, and every effect is committed in the same transaction as the queue, stream or
cron operation it belongs to, which is what the restore checks rely on:

- ``producer``: 1-5 orders per transaction, each an order row, its job (dedup key
  ``order-<id>``) and its stream event; every 10th transaction is rolled back on purpose and
  must leave nothing.
- ``worker NAME``: claims orders; per job, the effect row, a notification on ``acks`` and the ack
  in one transaction (``worker-b`` acks a whole claimed batch in one transaction and retries ~5%
  of the jobs instead, with no effect).
- ``consumer``: reads the stream after its committed offset; the stream effect rows and the new
  offset in one transaction.
- ``ticker``: ``honker_cron_tick()``, then the cron jobs' effects with their acks; takes and
  releases the named lock ``leader``, logging each fencing token in the acquire's transaction.
- ``listener``: waits for notifications on ``acks`` (exercises the wake path under Litestream);
  prints how many it got.
- ``writer``: a plain enqueue loop for the measurements; prints ``c <ms>`` per commit and
  ``b <ms>`` per busy error.
"""

from __future__ import annotations

import functools
import json
import random
import sqlite3
import sys
import time
from typing import Any

import common as c


def producer(conn: sqlite3.Connection) -> None:
    n = 0
    while True:
        n += 1
        rollback = n % 10 == 0

        def tx(rollback: bool = rollback) -> None:
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(random.randint(1, 5)):
                cur = conn.execute(
                    "INSERT INTO orders (total, created_ms) VALUES (?, ?)",
                    (random.randint(1, 10_000), c.now_ms()),
                )
                oid = cur.lastrowid
                payload = json.dumps({"order": oid})
                conn.execute(
                    "SELECT honker_enqueue(?, ?, ?)",
                    (c.ORDERS_QUEUE, payload, json.dumps({"dedup_key": f"order-{oid}"})),
                )
                conn.execute("SELECT honker_publish(?, ?, ?)", (c.TOPIC, payload, f"order-{oid}"))
            conn.execute("ROLLBACK" if rollback else "COMMIT")

        c.retry_busy(tx, conn)
        time.sleep(random.uniform(0, 0.004))


def worker(conn: sqlite3.Connection, name: str) -> None:
    batch_tx = name == "worker-b"
    while True:
        jobs = c.retry_busy(
            lambda: c.js(
                conn,
                "SELECT honker_claim_wait(?, ?, 16, ?, 500)",
                c.ORDERS_QUEUE,
                name,
                c.LEASE_MS,
            ),
            conn,
        )
        # Handling takes a while (4-12 ms a job), so the workers fall behind the producer.
        if batch_tx and jobs:
            time.sleep(sum(random.uniform(0.004, 0.012) for _ in jobs))
            c.retry_busy(functools.partial(ack_jobs, conn, name, jobs, flaky=True), conn)
        else:
            for job in jobs:
                time.sleep(random.uniform(0.004, 0.012))
                c.retry_busy(functools.partial(ack_jobs, conn, name, [job], flaky=False), conn)
        if batch_tx and random.random() < 0.2:
            # A second ticker: cron has no leader, any process may tick.
            c.retry_busy(lambda: conn.execute("SELECT honker_cron_tick()").fetchone(), conn)


def ack_jobs(conn: sqlite3.Connection, name: str, jobs: list[dict[str, Any]], flaky: bool) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for job in jobs:
        oid = job["payload"]["order"]
        retry = flaky and random.random() < 0.05
        try:
            if retry:
                conn.execute(
                    "SELECT honker_retry(?, ?, 20, 'flaky')", (job["id"], job["lease_token"])
                )
                continue
            conn.execute("SELECT honker_ack(?, ?)", (job["id"], job["lease_token"]))
        except sqlite3.OperationalError as e:
            if c.honker_code(e) != "queue.lease_lost":
                raise
            continue  # the lease ran out and someone else holds the job: no effect here
        conn.execute(
            "INSERT INTO effects (order_id, job_id, worker, token, done_ms) VALUES (?, ?, ?, ?, ?)",
            (oid, job["id"], name, job["lease_token"], c.now_ms()),
        )
        conn.execute(
            "SELECT honker_notify(?, ?)",
            (c.ACK_CHANNEL, json.dumps({"order": oid, "job": job["id"]})),
        )
    conn.execute("COMMIT")


def consume(conn: sqlite3.Connection, consumer: str, wait_ms: int) -> int:
    """Read the stream after the committed offset and apply one batch; how many it applied."""
    after = c.one(conn, "SELECT honker_offset(?, ?)", consumer, c.TOPIC) or 0
    events = c.js(conn, "SELECT honker_read_wait(?, ?, 64, ?)", c.TOPIC, after, wait_ms)
    if not events:
        return 0

    def tx() -> None:
        conn.execute("BEGIN IMMEDIATE")
        for ev in events:
            conn.execute(
                'INSERT INTO stream_effects (consumer, "offset", order_id) VALUES (?, ?, ?)',
                (consumer, ev["offset"], ev["payload"]["order"]),
            )
        conn.execute(
            "SELECT honker_commit_offset(?, ?, ?)", (consumer, c.TOPIC, events[-1]["offset"])
        )
        conn.execute("COMMIT")

    c.retry_busy(tx, conn)
    return len(events)


def consumer(conn: sqlite3.Connection) -> None:
    while True:
        c.retry_busy(lambda: consume(conn, c.CONSUMER, 500), conn)


def run_cron_jobs(conn: sqlite3.Connection, name: str) -> int:
    """Claim due cron jobs and record each one's boundary with its ack; how many it acked."""
    jobs = c.js(conn, "SELECT honker_claim(?, ?, 32, ?)", c.CRON_QUEUE, name, c.LEASE_MS)
    for job in jobs:

        def tx(job: dict[str, Any] = job) -> None:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT schedule, fire_ms FROM honker_fires WHERE job_id = ?", (job["id"],)
            ).fetchone()
            conn.execute("SELECT honker_ack(?, ?)", (job["id"], job["lease_token"]))
            conn.execute(
                "INSERT INTO cron_effects (schedule, fire_ms, job_id) VALUES (?, ?, ?)",
                (row[0], row[1], job["id"]),
            )
            conn.execute("COMMIT")

        c.retry_busy(tx, conn)
    return len(jobs)


def lock_turn(conn: sqlite3.Connection, owner: str) -> int | None:
    """Acquire ``leader`` and log the fencing token in the same transaction."""
    conn.execute("BEGIN IMMEDIATE")
    token = c.one(conn, "SELECT honker_lock_acquire(?, ?, 300)", c.LOCK_NAME, owner)
    if token is not None:
        conn.execute(
            "INSERT INTO lock_log (token, owner, acquired_ms) VALUES (?, ?, ?)",
            (token, owner, c.now_ms()),
        )
    conn.execute("COMMIT")
    return token  # type: ignore[no-any-return]


def lock_release(conn: sqlite3.Connection, token: int) -> None:
    conn.execute("SELECT honker_lock_release(?, ?)", (c.LOCK_NAME, token)).fetchone()


def ticker(conn: sqlite3.Connection) -> None:
    while True:
        c.retry_busy(lambda: conn.execute("SELECT honker_cron_tick()").fetchone(), conn)
        c.retry_busy(lambda: run_cron_jobs(conn, "cron-worker"), conn)
        token = c.retry_busy(lambda: lock_turn(conn, "ticker"), conn)
        if token is not None and random.random() < 0.5:
            c.retry_busy(functools.partial(lock_release, conn, token), conn)
        time.sleep(0.05)


def listener(conn: sqlite3.Connection) -> None:
    after = 0
    got = 0
    while True:
        rows = c.js(conn, "SELECT honker_listen_wait(?, ?, 256, 500)", c.ACK_CHANNEL, after)
        for r in rows:
            if r["id"] <= after:
                raise SystemExit(f"notification ids went backwards: {r['id']} after {after}")
            after = r["id"]
        got += len(rows)
        print(f"received {got}", flush=True)


def writer(conn: sqlite3.Connection) -> None:
    while True:
        try:
            conn.execute("SELECT honker_enqueue('measure', '{}')").fetchone()
            print(f"c {c.now_ms()}", flush=True)
        except sqlite3.OperationalError as e:
            if not c.is_busy(e):
                raise
            print(f"b {c.now_ms()}", flush=True)
        time.sleep(0.002)


def main() -> None:
    role, db = sys.argv[1], sys.argv[2]
    conn = c.connect(db)
    if role == "producer":
        producer(conn)
    elif role == "worker":
        worker(conn, sys.argv[3])
    elif role == "consumer":
        consumer(conn)
    elif role == "ticker":
        ticker(conn)
    elif role == "listener":
        listener(conn)
    elif role == "writer":
        writer(conn)
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
