#!/usr/bin/env bash
# CI for the Elixir binding: Debian's Elixir, erlang-p1-sqlite3 and erlang-jiffy, a C compiler
# and libsqlite3 for the waiter port program; then `mix compile --warnings-as-errors`, `mix format
# --check-formatted` and ExUnit twice: with the extension's cancel keys (when it has them) and
# with the bounded-wait fallback forced.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

pkgs=(elixir erlang-p1-sqlite3 erlang-jiffy erlang-dev gcc libc6-dev libsqlite3-dev)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${pkgs[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${pkgs[@]}"; }
fi

if [[ -z "${HONKER_EXT_PATH:-}" ]]; then
  HONKER_EXT_PATH="$(cd "$root" && cargo xtask ext | tail -n 1)"
fi
export HONKER_EXT_PATH
export MIX_HOME="${MIX_HOME:-/tmp/honker-mix-home}" HEX_OFFLINE=1 LANG=C.UTF-8 LC_ALL=C.UTF-8

cd "$here"
elixir --version | tail -n 1
MIX_ENV=test mix compile --warnings-as-errors
mix format --check-formatted
echo "== ExUnit (extension's cancel mechanism when present)"
mix test
echo "== ExUnit (bounded-wait fallback forced)"
HONKER_EX_NO_CANCEL=1 mix test
