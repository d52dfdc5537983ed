#!/usr/bin/env bash
# The browser test of `honker ui`: Debian's chromium, headless, driven by playwright-core (no
# browser download: it drives /usr/bin/chromium). Installs what it needs, builds the `honker`
# command, runs the test under node's test runner. Screenshots: <target>/ui-screenshots/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"

need=()
command -v chromium >/dev/null || need+=(chromium fonts-dejavu-core)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

(cd "$repo" && cargo build -q -p honker-cli)
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
export HONKER_BIN="$target/debug/honker"
export SCREENSHOTS="$target/ui-screenshots"
node --test --test-reporter=spec ui.test.mjs
