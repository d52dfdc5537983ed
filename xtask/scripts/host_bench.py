"""honker through a real host: Debian's python3 and its stdlib sqlite3, beside raw SQL.

Driven by `cargo xtask bench` (section `host`); it can also be run by hand:

    /usr/bin/python3 xtask/scripts/host_bench.py --ext honker-ext/target/release/libhonker_ext.so \
        [--runs 3] [--quick] [--peer-py PEERENV/bin/python] [--only SUBSTR] [--json OUT]

Variants, each in its own child process on a fresh database file:

  ext   libhonker_ext.so loaded into the host connection, then `SELECT honker_setup()`, every
        operation a call of honker's SQL functions (what every binding does).
  raw   the same host and the same PRAGMAs as honker_setup() (WAL, synchronous=NORMAL,
        wal_autocheckpoint=10000, busy_timeout=5000, foreign_keys=ON), honker's own tables and
        indexes (their DDL read from a file the extension created in this run), and plain SQL of
        the same shape: the INSERT, the claim UPDATE ... RETURNING, the DELETE, the SELECT.
  binding  honker's own Python binding (bindings/python) over the same extension, through its API,
        in the interpreter given by --binding-py (a venv of Debian's python3, so the same stdlib
        driver and SQLite as ext and raw; optional; `cargo xtask bench --binding`).
  peer  honker 0.5.0's Python package (the older project this one started from), through its
        API, in the interpreter given by --peer-py (optional; see its set-up in
        ../shared/bench/peer-honker-0.5/README.md, or `cargo xtask bench --peer`).

Runs are interleaved (the variant that goes first rotates) and each figure is the median over
the runs. The result is one JSON document on stdout's last line (or in --json).
"""

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ME = os.path.abspath(__file__)
QUEUE = "bench"
PAYLOAD = {"user_id": 42, "action": "send_email"}
PAYLOAD_TEXT = json.dumps(PAYLOAD)
# PRAGMAs honker_setup() applies, for the raw variant.
RAW_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "wal_autocheckpoint=10000",
    "busy_timeout=5000",
    "foreign_keys=ON",
)
RAW_TABLES = ("honker_jobs", "honker_notifications", "honker_streams")

RAW_ENQUEUE = (
    "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts, max_attempts,"
    " created_ms) VALUES (?1, 0, ?2, 0, ?3, 0, 5, ?3)"
)
RAW_CLAIM = (
    "UPDATE honker_jobs SET state = 2, attempts = attempts + 1, claims = claims + 1,"
    " lease_token = max(1, (((claims + 1) & 8191) << 40)"
    " | ((((SELECT random()) & 1099511627775) + id) & 1099511627775)),"
    " lease_expires = ?3, claimer = ?4, worker = NULL, holder = NULL"
    " WHERE id IN (SELECT id FROM honker_jobs WHERE queue = ?1 AND state = 0"
    " ORDER BY priority DESC, run_at, id LIMIT ?2 + 0)"
    " RETURNING id, payload, attempts, max_attempts, lease_token, priority, run_at"
)
RAW_ACK = "DELETE FROM honker_jobs WHERE id = ?1 AND lease_token = ?2 AND state = 2"
RAW_NOTIFY = "INSERT INTO honker_notifications (channel, payload, created_ms) VALUES (?1, ?2, ?3)"
RAW_LISTEN = (
    "SELECT id, channel, payload, created_ms FROM honker_notifications"
    " WHERE channel = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
)
RAW_PUBLISH = "INSERT INTO honker_streams (topic, key, payload, created_ms) VALUES (?1, NULL, ?2, ?3)"
RAW_READ = (
    'SELECT "offset", topic, key, payload, created_ms FROM honker_streams'
    ' WHERE topic = ?1 AND "offset" > ?2 ORDER BY "offset" LIMIT ?3'
)


def now_ms():
    return time.time_ns() // 1_000_000


def timed(n, body):
    """Operations per second of `body`, which does `n` of them."""
    start = time.perf_counter()
    body()
    return n / (time.perf_counter() - start)


class Host:
    """One stdlib sqlite3 connection in autocommit mode, set up as `variant` wants."""

    def __init__(self, path, variant, ext, raw_ddl):
        self.variant = variant
        self.conn = sqlite3.connect(path, isolation_level=None)
        if variant == "ext":
            self.conn.enable_load_extension(True)
            self.conn.load_extension(ext)
            self.conn.enable_load_extension(False)
            self.conn.execute("SELECT honker_setup()").fetchone()
        else:
            for pragma in RAW_PRAGMAS:
                self.conn.execute("PRAGMA " + pragma).fetchall()
            known = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'honker_jobs'"
            ).fetchone()
            if not known:
                self.conn.executescript("BEGIN;" + ";".join(raw_ddl) + ";COMMIT;")
        self.ex = self.conn.execute

    def value(self, sql, args=()):
        return self.ex(sql, args).fetchone()[0]

    def count(self, table):
        return self.value(f"SELECT count(*) FROM {table}")

    def close(self):
        self.conn.close()


def binding_open(path):
    import honker  # the binding, only importable under --binding-py

    return honker.open(path)


def peer_open(path):
    import honker  # the peer's package, only importable under --peer-py

    return honker.open(path)


# ------------------------------------------------------------------------------ figures
def enqueue(variant, host, path, n, per_tx):
    if variant == "peer":
        db = peer_open(path)
        q = db.queue(QUEUE)

        def body():
            if per_tx == 1:
                for _ in range(n):
                    q.enqueue(PAYLOAD)
                return
            for _ in range(n // per_tx):
                with db.transaction() as tx:
                    for _ in range(per_tx):
                        q.enqueue(PAYLOAD, tx=tx)

        rate = timed(n, body)
        got = db.query("SELECT count(*) n FROM _honker_live")[0]["n"]
        db.close()
    elif variant == "binding":
        db = binding_open(path)
        q = db.queue(QUEUE)

        def body():
            if per_tx == 1:
                for _ in range(n):
                    q.enqueue(PAYLOAD)
                return
            for _ in range(n // per_tx):
                with db.transaction() as tx:
                    for _ in range(per_tx):
                        q.enqueue(PAYLOAD, conn=tx)

        rate = timed(n, body)
        got = db.execute("SELECT count(*) FROM honker_jobs").fetchone()[0]
        db.close()
    else:
        ex = host.ex
        if variant == "ext":

            def one():
                ex("SELECT honker_enqueue(?1, ?2)", (QUEUE, PAYLOAD_TEXT)).fetchone()

        else:

            def one():
                ex(RAW_ENQUEUE, (QUEUE, PAYLOAD_TEXT, now_ms()))

        def body():
            if per_tx == 1:
                for _ in range(n):
                    one()
                return
            for _ in range(n // per_tx):
                ex("BEGIN IMMEDIATE")
                for _ in range(per_tx):
                    one()
                ex("COMMIT")

        rate = timed(n, body)
        got = host.count("honker_jobs")
    if got != n:
        raise SystemExit(f"{variant}: enqueue left {got} jobs, expected {n}")
    return rate


def prefill_jobs(variant, host, n):
    ex = host.ex
    for start in range(0, n, 1000):
        ex("BEGIN IMMEDIATE")
        for _ in range(min(1000, n - start)):
            if variant == "ext":
                ex("SELECT honker_enqueue(?1, ?2)", (QUEUE, PAYLOAD_TEXT)).fetchone()
            else:
                ex(RAW_ENQUEUE, (QUEUE, PAYLOAD_TEXT, now_ms()))
        ex("COMMIT")


def claim_ack(variant, host, path, depth, batch):
    if variant == "peer":
        db = peer_open(path)
        q = db.queue(QUEUE)
        for start in range(0, depth, 1000):
            with db.transaction() as tx:
                for _ in range(min(1000, depth - start)):
                    q.enqueue(PAYLOAD, tx=tx)

        def body():
            done = 0
            while done < depth:
                if batch == 1:
                    job = q.claim_one("w1")
                    if not job.ack():
                        raise SystemExit("peer: ack refused")
                    done += 1
                else:
                    jobs = q.claim_batch("w1", batch)
                    if not jobs or q.ack_batch([j.id for j in jobs], "w1") != len(jobs):
                        raise SystemExit("peer: ack_batch refused")
                    done += len(jobs)

        rate = timed(depth, body)
        left = db.query("SELECT count(*) n FROM _honker_live")[0]["n"]
        db.close()
    elif variant == "binding":
        db = binding_open(path)
        q = db.queue(QUEUE)
        for start in range(0, depth, 1000):
            q.enqueue_many([PAYLOAD] * min(1000, depth - start))

        def body():
            done = 0
            while done < depth:
                jobs = q.claim(batch, worker="w1")
                if not jobs:
                    raise SystemExit("binding: claim returned nothing")
                if batch == 1:
                    jobs[0].ack()
                elif q.ack_many(jobs) != len(jobs):
                    raise SystemExit("binding: ack_many refused")
                done += len(jobs)

        rate = timed(depth, body)
        left = db.execute("SELECT count(*) FROM honker_jobs").fetchone()[0]
        db.close()
    else:
        prefill_jobs(variant, host, depth)
        ex = host.ex
        loads, dumps = json.loads, json.dumps

        def body_ext():
            done = 0
            while done < depth:
                jobs = loads(host.value("SELECT honker_claim(?1, ?2, ?3)", (QUEUE, "w1", batch)))
                if not jobs:
                    raise SystemExit("ext: claim returned nothing")
                if batch == 1:
                    acked = host.value(
                        "SELECT honker_ack(?1, ?2)", (jobs[0]["id"], jobs[0]["lease_token"])
                    )
                else:
                    pairs = dumps([[j["id"], j["lease_token"]] for j in jobs])
                    acked = host.value("SELECT honker_ack_batch(?1)", (pairs,))
                if acked != len(jobs):
                    raise SystemExit(f"ext: acked {acked} of {len(jobs)}")
                done += len(jobs)

        def body_raw():
            done = 0
            while done < depth:
                rows = ex(RAW_CLAIM, (QUEUE, batch, now_ms() + 30_000, 1)).fetchall()
                if not rows:
                    raise SystemExit("raw: claim returned nothing")
                for row in rows:
                    loads(row[1])  # a worker decodes each payload, as ext's callers get them
                if batch == 1:
                    acked = ex(RAW_ACK, (rows[0][0], rows[0][4])).rowcount
                else:
                    ex("BEGIN IMMEDIATE")
                    acked = host.conn.executemany(RAW_ACK, [(r[0], r[4]) for r in rows]).rowcount
                    ex("COMMIT")
                if acked != len(rows):
                    raise SystemExit(f"raw: acked {acked} of {len(rows)}")
                done += len(rows)

        rate = timed(depth, body_ext if variant == "ext" else body_raw)
        left = host.count("honker_jobs")
    if left != 0:
        raise SystemExit(f"{variant}: {left} jobs left after claim + ack")
    return rate


def notify(variant, host, path, n):
    if variant == "peer":
        db = peer_open(path)

        def body():
            for _ in range(n):
                with db.transaction() as tx:
                    tx.notify(QUEUE, PAYLOAD)

        rate = timed(n, body)
        got = db.query("SELECT count(*) n FROM _honker_notifications")[0]["n"]
        db.close()
    elif variant == "binding":
        db = binding_open(path)
        rate = timed(n, lambda: [db.notify(QUEUE, PAYLOAD) for _ in range(n)])
        got = db.execute("SELECT count(*) FROM honker_notifications").fetchone()[0]
        db.close()
    else:
        ex = host.ex
        if variant == "ext":

            def body():
                for _ in range(n):
                    ex("SELECT honker_notify(?1, ?2)", (QUEUE, PAYLOAD_TEXT)).fetchone()

        else:

            def body():
                for _ in range(n):
                    ex(RAW_NOTIFY, (QUEUE, PAYLOAD_TEXT, now_ms()))

        rate = timed(n, body)
        got = host.count("honker_notifications")
    if got != n:
        raise SystemExit(f"{variant}: {got} notifications, expected {n}")
    return rate


def publish(variant, host, path, n):
    if variant == "peer":
        db = peer_open(path)
        stream = db.stream(QUEUE)
        rate = timed(n, lambda: [stream.publish(PAYLOAD) for _ in range(n)])
        got = db.query("SELECT count(*) n FROM _honker_stream")[0]["n"]
        db.close()
    elif variant == "binding":
        db = binding_open(path)
        stream = db.stream(QUEUE)
        rate = timed(n, lambda: [stream.publish(PAYLOAD) for _ in range(n)])
        got = db.execute("SELECT count(*) FROM honker_streams").fetchone()[0]
        db.close()
    else:
        ex = host.ex
        if variant == "ext":

            def body():
                for _ in range(n):
                    ex("SELECT honker_publish(?1, ?2)", (QUEUE, PAYLOAD_TEXT)).fetchone()

        else:

            def body():
                for _ in range(n):
                    ex(RAW_PUBLISH, (QUEUE, PAYLOAD_TEXT, now_ms()))

        rate = timed(n, body)
        got = host.count("honker_streams")
    if got != n:
        raise SystemExit(f"{variant}: {got} events, expected {n}")
    return rate


def replay(variant, host, path, n, page=1000):
    seen = 0
    if variant == "peer":
        db = peer_open(path)
        stream = db.stream(QUEUE)
        for _ in range(n // 1000):
            with db.transaction() as tx:
                for _ in range(1000):
                    stream.publish(PAYLOAD, tx=tx)

        def body():
            nonlocal seen
            offset = 0
            while rows := stream._read_since(offset, page):
                seen += len(rows)
                offset = rows[-1]["offset"]

        rate = timed(n, body)
        db.close()
    elif variant == "binding":
        db = binding_open(path)
        stream = db.stream(QUEUE)
        for _ in range(n // 1000):
            with db.transaction() as tx:
                for _ in range(1000):
                    stream.publish(PAYLOAD, conn=tx)

        def body():
            nonlocal seen
            offset = 0
            while events := stream.read(after=offset, limit=page):
                seen += len(events)
                offset = events[-1].offset

        rate = timed(n, body)
        db.close()
    else:
        ex = host.ex
        for _ in range(n // 1000):
            ex("BEGIN IMMEDIATE")
            if variant == "ext":
                for _ in range(1000):
                    ex("SELECT honker_publish(?1, ?2)", (QUEUE, PAYLOAD_TEXT)).fetchone()
            else:
                host.conn.executemany(RAW_PUBLISH, [(QUEUE, PAYLOAD_TEXT, now_ms())] * 1000)
            ex("COMMIT")
        loads = json.loads

        def body():
            nonlocal seen
            offset = 0
            while True:
                if variant == "ext":
                    rows = loads(host.value("SELECT honker_read(?1, ?2, ?3)", (QUEUE, offset, page)))
                    if not rows:
                        return
                    offset = rows[-1]["offset"]
                else:
                    rows = ex(RAW_READ, (QUEUE, offset, page)).fetchall()
                    if not rows:
                        return
                    # Every consumer decodes the payloads: ext and the others hand them over
                    # decoded, so the raw side decodes them too.
                    for row in rows:
                        loads(row[3])
                    offset = rows[-1][0]
                seen += len(rows)

        rate = timed(n, body)
    if seen != n:
        raise SystemExit(f"{variant}: replay saw {seen} events, expected {n}")
    return rate


# ------------------------------------------------------------------------------ wake latency
def listener(variant, kind, path, n, ext, raw_ddl):
    """Child: block in the wait, say `ready`, then print the latencies (microseconds) as JSON."""
    mono, loads = time.monotonic_ns, json.loads
    lat = []
    if variant == "peer":
        import asyncio

        db = peer_open(path)

        async def go():
            if kind == "notify":
                it = db.listen(QUEUE).__aiter__()
                print("ready", flush=True)
                while len(lat) < n:
                    note = await it.__anext__()
                    lat.append((mono() - note.payload["t"]) / 1e3)
            else:
                it = db.queue(QUEUE).claim("w1").__aiter__()
                print("ready", flush=True)
                while len(lat) < n:
                    job = await it.__anext__()
                    lat.append((mono() - job.payload["t"]) / 1e3)
                    job.ack()

        asyncio.run(go())
        print(json.dumps(lat), flush=True)
        return
    if variant == "binding":
        db = binding_open(path)
        if kind == "notify":
            notes = iter(db.listen(QUEUE))
            print("ready", flush=True)
            while len(lat) < n:
                note = next(notes)
                lat.append((mono() - note.payload["t"]) / 1e3)
        else:
            q = db.queue(QUEUE)
            print("ready", flush=True)
            while len(lat) < n:
                jobs = q.claim_wait(1, timeout=30, worker="w1")
                t = mono()
                for job in jobs:
                    lat.append((t - job.payload["t"]) / 1e3)
                    job.ack()
        db.close()
        print(json.dumps(lat), flush=True)
        return
    host = Host(path, variant, ext, raw_ddl)
    ex = host.ex
    print("ready", flush=True)
    if variant == "ext" and kind == "notify":
        last = 0
        while len(lat) < n:
            got = host.value("SELECT honker_listen_wait(?1, ?2, 100, 30000)", (QUEUE, last))
            t = mono()
            for note in loads(got):
                lat.append((t - note["payload"]["t"]) / 1e3)
                last = note["id"]
    elif variant == "ext":
        while len(lat) < n:
            got = host.value("SELECT honker_claim_wait(?1, 'w1', 1, 30000, 30000)", (QUEUE,))
            t = mono()
            for job in loads(got):
                lat.append((t - job["payload"]["t"]) / 1e3)
                host.value("SELECT honker_ack(?1, ?2)", (job["id"], job["lease_token"]))
    else:
        # The raw limit of a polling watcher: PRAGMA data_version every 1 ms, then the read.
        last = 0
        while len(lat) < n:
            version = host.value("PRAGMA data_version")
            if kind == "notify":
                rows = ex(RAW_LISTEN, (QUEUE, last, 100)).fetchall()
                t = mono()
                for row in rows:
                    lat.append((t - loads(row[2])["t"]) / 1e3)
                    last = row[0]
            else:
                rows = ex(RAW_CLAIM, (QUEUE, 1, now_ms() + 30_000, 1)).fetchall()
                t = mono()
                for row in rows:
                    lat.append((t - loads(row[1])["t"]) / 1e3)
                    ex(RAW_ACK, (row[0], row[4]))
            if not rows:
                while host.value("PRAGMA data_version") == version:
                    time.sleep(0.001)
    host.close()
    print(json.dumps(lat), flush=True)


def sender(variant, kind, path, n, ext, raw_ddl):
    """Child: `n` paced writes, each carrying its send time, taken before BEGIN."""
    mono = time.monotonic_ns
    if variant == "peer":
        db = peer_open(path)
        q = db.queue(QUEUE)
        for _ in range(n):
            time.sleep(random.uniform(0.002, 0.006))
            t = mono()
            if kind == "notify":
                with db.transaction() as tx:
                    tx.notify(QUEUE, {"t": t})
            else:
                q.enqueue({"t": t})
        db.close()
        return
    if variant == "binding":
        db = binding_open(path)
        q = db.queue(QUEUE)
        for _ in range(n):
            time.sleep(random.uniform(0.002, 0.006))
            t = mono()
            if kind == "notify":
                db.notify(QUEUE, {"t": t})
            else:
                q.enqueue({"t": t})
        db.close()
        return
    host = Host(path, variant, ext, raw_ddl)
    ex = host.ex
    for _ in range(n):
        time.sleep(random.uniform(0.002, 0.006))
        t = mono()
        body = json.dumps({"t": t})
        ex("BEGIN IMMEDIATE")
        if variant == "ext":
            fn = "honker_notify" if kind == "notify" else "honker_enqueue"
            ex(f"SELECT {fn}(?1, ?2)", (QUEUE, body)).fetchone()
        else:
            ex(RAW_NOTIFY if kind == "notify" else RAW_ENQUEUE, (QUEUE, body, now_ms()))
        ex("COMMIT")
    host.close()


def wake(variant, path, kind, ctx):
    """p50 / p99 in microseconds from before the sender's BEGIN to the listener's return."""
    # The listener creates the schema before it says `ready`; the sender starts after that.
    py = ctx["py"][variant]
    total = ctx["samples"] + 20
    common = [variant, kind, path, str(total), ctx["ext"], json.dumps(ctx["raw_ddl"])]
    lis = subprocess.Popen([py, ME, "--listener", *common], stdout=subprocess.PIPE, text=True)
    if lis.stdout.readline().strip() != "ready":
        raise SystemExit(f"{variant} {kind} listener did not start")
    time.sleep(0.2)
    subprocess.run([py, ME, "--sender", *common], check=True)
    lat = sorted(json.loads(lis.stdout.readline())[20:])
    if lis.wait() != 0:
        raise SystemExit(f"{variant} {kind} listener failed")

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]

    return {"p50": pct(50), "p99": pct(99)}


# ------------------------------------------------------------------------------ the CLI host
def cli_enqueue(variant, path, ctx):
    """Enqueue 1/tx with Debian's sqlite3 CLI as the host: one script of N statements."""
    n = ctx["cli_n"]
    if variant == "ext":
        connect = f".load {ctx['ext']}\nSELECT honker_setup();\n"
        once = connect
        stmt = f"SELECT honker_enqueue('{QUEUE}', '{PAYLOAD_TEXT}');"
    else:
        # Milliseconds since the epoch in SQL that 3.38+ knows ('subsec' came only in 3.42).
        now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
        connect = "".join(f"PRAGMA {p};\n" for p in RAW_PRAGMAS)
        once = connect + "".join(d + ";\n" for d in ctx["raw_ddl"])
        stmt = (
            "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts,"
            f" max_attempts, created_ms) VALUES ('{QUEUE}', 0, '{PAYLOAD_TEXT}', 0, {now}, 0, 5,"
            f" {now});"
        )
    script = connect + (stmt + "\n") * n
    cli = ctx["sqlite3"]
    # The schema first, so creating it is not counted against either side.
    subprocess.run([cli, path], input=once, text=True, check=True, stdout=subprocess.DEVNULL)
    start = time.perf_counter()
    subprocess.run([cli, path], input=script, text=True, check=True, stdout=subprocess.DEVNULL)
    rate = n / (time.perf_counter() - start)
    got = subprocess.run(
        [cli, path, "SELECT count(*) FROM honker_jobs"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(got) != n:
        raise SystemExit(f"cli {variant}: {got} jobs, expected {n}")
    return rate


# ------------------------------------------------------------------------------ the table
# (key, label, unit, function(variant, host, path, ctx), in a child process?)
FIGURES = [
    ("enqueue_1", "enqueue 1/tx", "jobs/s", lambda v, h, p, c: enqueue(v, h, p, c["n"], 1)),
    ("enqueue_100", "enqueue 100/tx", "jobs/s", lambda v, h, p, c: enqueue(v, h, p, c["n"] * 10, 100)),
    ("claim_1", "claim 1 + ack 1, 1k deep", "jobs/s", lambda v, h, p, c: claim_ack(v, h, p, 1000, 1)),
    ("claim_128", "claim 128 + ack 128, 10k deep", "jobs/s", lambda v, h, p, c: claim_ack(v, h, p, 10_000, 128)),
    ("notify_1", "notify 1/tx", "notes/s", lambda v, h, p, c: notify(v, h, p, c["n"])),
    ("publish_1", "publish 1/tx", "events/s", lambda v, h, p, c: publish(v, h, p, c["n"])),
    ("replay", "replay 100k events, pages of 1000", "events/s", lambda v, h, p, c: replay(v, h, p, c["replay_n"])),
    ("wake_notify", "notify -> honker_listen_wait", "us", None),
    ("wake_enqueue", "enqueue -> honker_claim_wait", "us", None),
    ("cli_enqueue_1", "sqlite3 CLI host: enqueue 1/tx", "jobs/s", None),
]


def child(variant, key, path, ctx):
    fig = next(f for f in FIGURES if f[0] == key)
    own = variant in ("ext", "raw")
    host = Host(path, variant, ctx["ext"], ctx["raw_ddl"]) if own else None
    try:
        return fig[3](variant, host, path, ctx)
    finally:
        if host is not None:
            host.close()


def fresh(directory, name):
    path = os.path.join(directory, name + ".db")
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
    return path


def raw_schema(ext, directory):
    """The CREATE statements of honker's own tables and their indexes, from a file the
    extension initialised in this run, so the raw variant writes rows of exactly its shape."""
    path = fresh(directory, "schema")
    conn = sqlite3.connect(path)
    conn.enable_load_extension(True)
    conn.load_extension(ext)
    marks = ",".join("?" * len(RAW_TABLES))
    rows = conn.execute(
        f"SELECT sql FROM sqlite_master WHERE tbl_name IN ({marks}) AND sql IS NOT NULL"
        " AND type IN ('table', 'index') ORDER BY type = 'index', name",
        RAW_TABLES,
    ).fetchall()
    conn.close()
    return [r[0] for r in rows]


def measure(variant, key, ctx, run):
    path = fresh(ctx["dir"], f"{variant}-{key}-{run}")
    if key.startswith("wake_"):
        return wake(variant, path, key[len("wake_"):], ctx)
    if key == "cli_enqueue_1":
        return cli_enqueue(variant, path, ctx)
    out = subprocess.run(
        [ctx["py"][variant], ME, "--child", variant, key, path, json.dumps(ctx)],
        capture_output=True,
        text=True,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{variant} {key} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ext", required=True, help="path of libhonker_ext.so")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller figures, for a smoke test")
    ap.add_argument("--peer-py", default="", help="a python with honker 0.5.0 installed")
    ap.add_argument("--binding-py", default="", help="a python with bindings/python installed")
    ap.add_argument("--sqlite3", default="sqlite3", help="the sqlite3 CLI for the CLI figure")
    ap.add_argument("--only", default="", help="only figures whose key contains this")
    ap.add_argument("--json", default="", help="also write the result here")
    args = ap.parse_args()
    directory = tempfile.mkdtemp(prefix="honker-host-bench-")
    ctx = {
        "ext": os.path.abspath(args.ext),
        "dir": directory,
        "n": 1000 if args.quick else 5000,
        "replay_n": 20_000 if args.quick else 100_000,
        "samples": 60 if args.quick else 300,
        "cli_n": 1000 if args.quick else 5000,
        "sqlite3": args.sqlite3,
        "py": {
            "ext": sys.executable,
            "raw": sys.executable,
            "binding": args.binding_py,
            "peer": args.peer_py,
        },
    }
    ctx["raw_ddl"] = raw_schema(ctx["ext"], directory)
    # The binding loads this very library, not the copy its wheel carries.
    os.environ["HONKER_EXT"] = ctx["ext"]
    variants = ["ext", "raw"] + (["binding"] if args.binding_py else [])
    variants += ["peer"] if args.peer_py else []
    results = []
    for key, label, unit, _ in FIGURES:
        if args.only and args.only not in key:
            continue
        kinds = [v for v in variants if key != "cli_enqueue_1" or v in ("ext", "raw")]
        runs = {v: [] for v in kinds}
        for run in range(args.runs):
            turn = run % len(kinds)
            for variant in kinds[turn:] + kinds[:turn]:
                runs[variant].append(measure(variant, key, ctx, run))
        summary = {}
        for variant, values in runs.items():
            if unit == "us":
                summary[variant] = {
                    q: statistics.median(v[q] for v in values) for q in ("p50", "p99")
                }
            else:
                summary[variant] = statistics.median(values)
        results.append({"key": key, "label": label, "unit": unit, "median": summary, "runs": runs})
        shown = "  ".join(f"{v}={summary[v]!r}" for v in kinds)
        print(f"host bench: {label}: {shown}", file=sys.stderr, flush=True)
    doc = {
        "host": f"Python {sys.version.split()[0]}, sqlite3 module, SQLite {sqlite3.sqlite_version}",
        "runs": args.runs,
        "peer": bool(args.peer_py),
        "binding": bool(args.binding_py),
        "figures": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    print(json.dumps(doc))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        ctx = json.loads(sys.argv[5])
        print("RESULT " + json.dumps(child(sys.argv[2], sys.argv[3], sys.argv[4], ctx)), flush=True)
    elif len(sys.argv) > 1 and sys.argv[1] in ("--listener", "--sender"):
        fn = listener if sys.argv[1] == "--listener" else sender
        fn(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], json.loads(sys.argv[7]))
    else:
        main()
