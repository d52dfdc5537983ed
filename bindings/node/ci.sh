#!/usr/bin/env bash
# CI for the Node.js/Bun binding: install (better-sqlite3 built from source against the system
# Node headers, bun@1 from npm), type-check, build, then the same tests under node and bun.
# Run from the repository root (or anywhere); HONKER_EXT_PATH names the built extension, else
# `cargo xtask ext` builds it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

if [[ -z "${HONKER_EXT_PATH:-}" || ! -f "${HONKER_EXT_PATH:-}" ]]; then
  echo "== building the extension (cargo xtask ext)"
  (cd "$root" && cargo xtask ext)
  export HONKER_EXT_PATH="$root/honker-ext/target/release/libhonker_ext.so"
fi
export HONKER_EXT="$HONKER_EXT_PATH"
echo "== extension: $HONKER_EXT"

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "Node >= 20 is needed, found $(node --version)" >&2
  exit 1
fi
# better-sqlite3 has no prebuilt binary reachable here: it builds against the headers that
# come with the installed Node (only the package registries are reachable, not nodejs.org).
[[ -f /usr/include/node/node.h ]] || { echo "no Node headers at /usr/include/node (better-sqlite3 builds against them)" >&2; exit 1; }

echo "== npm ci (better-sqlite3 from source with npm_config_nodedir=/usr, bun@1)"
export npm_config_nodedir=/usr
# One install at a time in this directory (the interop participants' build installs here too).
flock /tmp/honker-bindings-node.lock npm ci --no-audit --no-fund --loglevel=error
bun="$here/node_modules/.bin/bun"
echo "== node $(node --version), bun $("$bun" --version)"

echo "== tsc --strict --noEmit"
npx tsc --noEmit -p tsconfig.test.json
echo "== build (ESM + d.ts, CommonJS) and tests"
node scripts/build.mjs
npx tsc -p tsconfig.test.json

status=0
echo "== node --test"
node --test --test-concurrency=1 dist-test/test/*.test.js > >(tee /tmp/honker-node-ci.log) 2>&1 || status=1
wait
echo "== bun test"
"$bun" test --timeout 180000 dist-test/test/ > >(tee /tmp/honker-bun-ci.log) 2>&1 || status=1
wait

# The README's install from a checkout, as a new user runs it: a fresh project, no HONKER_EXT, so
# the packed copy must carry the extension itself; then both quickstarts as pasted.
readme_quickstarts() {
  local scratch
  scratch="$(mktemp -d /tmp/honker-node-quickstart.XXXXXX)"
  node -e '
    const fs = require("node:fs");
    const md = fs.readFileSync(process.argv[1], "utf8");
    for (const [title, file] of [["Node.js", "quickstart.mjs"], ["Bun", "quickstart.ts"]]) {
      const m = md.match(new RegExp("## Quickstart \\(" + title.replace(".", "\\.") + "\\)\\n\\n```[a-z]*\\n([\\s\\S]*?)```"));
      if (!m) { console.error("README.md has no " + title + " quickstart block"); process.exit(1); }
      fs.writeFileSync(process.argv[2] + "/" + file, m[1]);
    }' "$here/README.md" "$scratch" || return 1
  (
    cd "$scratch"
    unset HONKER_EXT HONKER_EXT_PATH
    npm init -y >/dev/null
    flock /tmp/honker-bindings-node.lock npm install --install-links --no-audit --no-fund --loglevel=error "$here" || exit 1
    [[ -f node_modules/honker/native/libhonker_ext.so ]] || { echo "the installed copy carries no native/libhonker_ext.so" >&2; exit 1; }
    out="$(timeout 60 node quickstart.mjs)" || { echo "quickstart.mjs failed: $out" >&2; exit 1; }
    echo "$out"
    grep -qx 'sending to ada@example.com' <<<"$out" || { echo "quickstart.mjs did not send the email" >&2; exit 1; }
    grep -q '^result { sentAt: [0-9]* }$' <<<"$out" || { echo "quickstart.mjs printed no result" >&2; exit 1; }
    out="$(timeout 60 "$bun" quickstart.ts)" || { echo "quickstart.ts failed: $out" >&2; exit 1; }
    echo "$out"
    [[ "$(head -n 1 <<<"$out")" == 144 ]] || { echo "quickstart.ts did not print 144" >&2; exit 1; }
    grep -q 'hello' <<<"$out" || { echo "quickstart.ts printed no notification" >&2; exit 1; }
  ) || return 1
  rm -rf "$scratch"
}
echo "== the README's install from a checkout (npm install --install-links) and its quickstarts"
if readme_quickstarts; then echo "quickstarts: ok"; else echo "quickstarts: FAILED"; status=1; fi

np="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' /tmp/honker-node-ci.log | tail -1)"
nf="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' /tmp/honker-node-ci.log | tail -1)"
bp="$(sed -n 's/^ *\([0-9]*\) pass$/\1/p' /tmp/honker-bun-ci.log | tail -1)"
bf="$(sed -n 's/^ *\([0-9]*\) fail$/\1/p' /tmp/honker-bun-ci.log | tail -1)"
np=${np:-0}; nf=${nf:-1}; bp=${bp:-0}; bf=${bf:-1}
echo "node: $np passed, $nf failed"
echo "bun: $bp passed, $bf failed"
if (( np == 0 || bp == 0 || nf > 0 || bf > 0 )); then status=1; fi
echo "total: $((np + bp)) passed, $((nf + bf)) failed"
exit $status
