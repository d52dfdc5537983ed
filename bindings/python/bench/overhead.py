"""The Python binding's overhead over the same SQL through the same driver, in one run.

    python bench/overhead.py [--chunks 40] [--m 100]

For each figure, the binding's call and the raw SQL it stands for (``SELECT honker_x(...)`` with
``json.dumps`` of the payload and ``json.loads`` of any JSON result, as a user writing the SQL by hand
would) run on the same connection of one fresh database file, in alternating chunks (so file growth,
checkpoints and the machine's load fall on both sides alike). It prints median rates and the ratio
raw/binding (1.00 = no overhead; the target is <= 1.20).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, List, Tuple

import honker

PAYLOAD = {"user_id": 42, "action": "send_email"}


def rate(n: int, fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=40, help="alternating chunks per side and figure")
    ap.add_argument("--m", type=int, default=100, help="operations per chunk")
    args = ap.parse_args()
    m = args.m
    dumps, loads = json.dumps, json.loads
    batch = [PAYLOAD] * 100

    with tempfile.TemporaryDirectory() as d:
        db = honker.open(os.path.join(d, "bench.db"))
        _ = db.hub  # a running dispatcher, as in an application with workers: its kick is part of the cost
        raw = db.connection()  # the same connection, file and settings for both sides
        q = db.queue("bench")

        def claim_ack() -> None:
            for j in q.claim(1):
                j.ack()

        def raw_claim_ack() -> None:
            for j in loads(raw.execute("SELECT honker_claim(?, ?, ?, ?)", ("bench", "raw", 1, None)).fetchone()[0]):
                raw.execute("SELECT honker_ack(?, ?)", (j["id"], j["lease_token"])).fetchone()

        figures: List[Tuple[str, int, Callable[[], Any], Callable[[], Any]]] = [
            ("enqueue 1/tx", 1,
             lambda: q.enqueue(PAYLOAD),
             lambda: raw.execute("SELECT honker_enqueue(?, ?)", ("bench", dumps(PAYLOAD))).fetchone()[0]),
            ("enqueue_many 100/call (jobs/s)", 100,
             lambda: q.enqueue_many(batch),
             lambda: loads(raw.execute("SELECT honker_enqueue_batch(?, ?)", ("bench", dumps(batch))).fetchone()[0])),
            ("claim 1 + ack 1", 1, claim_ack, raw_claim_ack),
            ("notify 1/tx", 1,
             lambda: db.notify("ch", PAYLOAD),
             lambda: raw.execute("SELECT honker_notify(?, ?)", ("ch", dumps(PAYLOAD))).fetchone()[0]),
        ]
        rows = []
        for name, per_call, binding, rawsql in figures:
            calls = m if per_call == 1 else max(m // 20, 2)
            b_rates: List[float] = []
            r_rates: List[float] = []
            for i in range(args.chunks):
                sides = [(binding, b_rates), (rawsql, r_rates)]
                for fn, out in (sides if i % 2 == 0 else sides[::-1]):
                    out.append(per_call * rate(calls, fn))
            b, r = statistics.median(b_rates), statistics.median(r_rates)
            rows.append((name, b, r))
        db.close()
    print(f"python {sys.version.split()[0]} ({sys.executable}), driver {honker.driver_name()}, "
          f"SQLite {getattr(honker.connect_module(), 'sqlite_version', '?')}, "
          f"medians of {args.chunks} alternating chunks of {m} operations per side")
    print()
    print("| figure | binding | raw SQL, same driver | raw/binding |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for name, b, r in rows:
        worst = max(worst, r / b)
        print(f"| {name} | {b:,.0f}/s | {r:,.0f}/s | {r / b:.2f} |")
    print()
    print(f"worst ratio {worst:.2f} (target <= 1.20): {'ok' if worst <= 1.2 else 'OVER'}")


if __name__ == "__main__":
    main()
