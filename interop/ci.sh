#!/bin/sh
# The interop matrix, as CI runs it: every scenario for every ordered pair of present participants.
# Run from the repository root; HONKER_EXT_PATH (the built extension) is used when set.
set -eu
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3; }
# The elixir participant's toolchain (its build step compiles bindings/elixir with mix): Debian's
# Elixir, erlang-p1-sqlite3 and erlang-jiffy, and a C compiler with libsqlite3 for its waiter.
elixir_pkgs="elixir erlang-p1-sqlite3 erlang-jiffy erlang-dev gcc libc6-dev libsqlite3-dev"
# shellcheck disable=SC2086
dpkg -s $elixir_pkgs >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends $elixir_pkgs ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $elixir_pkgs; }
}
exec cargo xtask interop "$@"
