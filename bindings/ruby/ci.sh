#!/usr/bin/env bash
# CI for the Ruby gem: Debian's Ruby, sqlite3 gem, ActiveJob and minitest; a warnings-on syntax
# check of every file, then the minitest suite twice: with the extension's cancel keys (when it
# has them) and with the bounded-wait fallback forced.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

pkgs=(ruby ruby-sqlite3 ruby-activejob ruby-minitest libsqlite3-0)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${pkgs[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${pkgs[@]}"; }
fi

if [[ -z "${HONKER_EXT_PATH:-}" ]]; then
  HONKER_EXT_PATH="$(cd "$root" && cargo xtask ext | tail -n 1)"
fi
export HONKER_EXT_PATH

cd "$here"
ruby -v
for f in lib/*.rb lib/**/*.rb test/*.rb bench/*.rb; do
  out="$(ruby -wc "$f" 2>&1)" || { echo "$out"; exit 1; }
  if grep -q warning <<<"$out"; then echo "$out"; exit 1; fi
done
gem build honker.gemspec -o /tmp/honker-ci.gem >/dev/null
run() { ruby -w -Ilib -Itest -e 'Dir["test/test_*.rb"].sort.each { |f| require_relative f }'; }
echo "== minitest (extension's cancel mechanism when present)"
run
echo "== minitest (bounded-wait fallback forced)"
HONKER_RUBY_NO_CANCEL=1 run
