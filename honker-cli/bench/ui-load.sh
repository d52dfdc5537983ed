#!/usr/bin/env bash
# Load figure for `honker ui` (a benchmark, not a test): fill a file with 1M jobs through the
# extension's SQL functions, start `honker ui` on it, and time each page's JSON with curl
# (median of 7 requests after one warm-up). Run from anywhere:
#   HONKER_EXT_PATH=.../libhonker_ext.so bash honker-cli/bench/ui-load.sh [jobs]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
jobs="${1:-1000000}"
ext="${HONKER_EXT_PATH:-$(cd "$repo" && cargo xtask ext | tail -n 1)}"
(cd "$repo" && cargo build -q --release -p honker-cli)
honker="$target/release/honker"
dir="$(mktemp -d)"
trap 'kill "${ui_pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
db="$dir/load.db"

# Debian's python3 (its sqlite3 can load extensions): 3 queues, payloads with a tenant key,
# 10 000 dead letters with errors, 2 000 running jobs under leases.
/usr/bin/python3 - "$ext" "$db" "$jobs" <<'PY'
import json, sqlite3, sys, time
ext, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None)
c.enable_load_extension(True)
c.load_extension(ext)
c.execute("SELECT honker_setup()")
t0 = time.time()
queues = ["emails", "reports", "webhooks"]
batch = 10_000
for start in range(0, n, batch):
    q = queues[(start // batch) % len(queues)]
    payloads = [{"tenant": i % 100, "order": i, "to": f"user{i}@example.com"} for i in range(start, min(n, start + batch))]
    c.execute("SELECT honker_enqueue_batch(?, ?, ?)", (q, json.dumps(payloads), json.dumps({"max_attempts": 1})))
claimed = json.loads(c.execute("SELECT honker_claim('webhooks', 'loader', 10000, 3600000)").fetchone()[0])
c.execute("BEGIN IMMEDIATE")
for j in claimed:
    c.execute("SELECT honker_fail(?, ?, ?)", (j["id"], j["lease_token"], f"HTTP 503 from hook {j['id'] % 7}"))
c.execute("COMMIT")
c.execute("SELECT honker_claim('emails', 'worker-a', 2000, 3600000)")
print(f"filled {n} jobs in {time.time() - t0:.1f} s", file=sys.stderr)
PY

"$honker" ui --db "$db" --bind 127.0.0.1:0 >"$dir/ui.out" &
ui_pid=$!
for _ in $(seq 100); do grep -q http "$dir/ui.out" 2>/dev/null && break; sleep 0.1; done
base="$(grep -o 'http://[^/]*' "$dir/ui.out" | head -n 1)"

time_of() {
    curl -s -o /dev/null "$base$1"
    for _ in 1 2 3 4 5 6 7; do curl -s -o /dev/null -w '%{time_total}\n' "$base$1"; done |
        sort -n | sed -n 4p
}
printf '%-60s %s\n' "request ($jobs jobs in the file)" "median seconds"
for path in \
    "/api/overview" \
    "/metrics" \
    "/api/jobs" \
    "/api/jobs?queue=reports&state=pending" \
    "/api/jobs?queue=emails&state=running" \
    "/api/jobs?key=tenant&value=42" \
    "/api/jobs?queue=reports&key=tenant&value=42" \
    "/api/jobs?state=dead&error=hook%203" \
    "/api/jobs?queue=webhooks&before=500000" \
    "/api/job/123456" \
    "/api/workers"; do
    printf '%-60s %s\n' "$path" "$(time_of "$path")"
done
# The overview is cached while nothing commits; this one is computed afresh each time.
printf '%-60s %s\n' "/api/overview after a commit (uncached)" \
    "$(for _ in 1 2 3 4 5; do "$honker" notify --db "$db" --channel bump '{}' >/dev/null; curl -s -o /dev/null -w '%{time_total}\n' "$base/api/overview"; done | sort -n | sed -n 3p)"
