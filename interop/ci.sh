#!/bin/sh
# The interop matrix, as CI runs it: every scenario for every ordered pair of present participants.
# Run from the repository root; HONKER_EXT_PATH (the built extension) is used when set.
set -eu
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3; }
exec cargo xtask interop "$@"
