#!/usr/bin/env bash
# CI for the Go binding: Debian's Go and mattn/go-sqlite3 (no module proxy), then vet and the
# race-enabled suite twice: with the extension's cancel keys (when it has them) and with the
# bounded-wait fallback forced.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

pkgs=(golang golang-github-mattn-go-sqlite3-dev libsqlite3-dev gcc libc6-dev)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${pkgs[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${pkgs[@]}"; }
fi

if [[ -z "${HONKER_EXT_PATH:-}" ]]; then
  HONKER_EXT_PATH="$(cd "$root" && cargo xtask ext | tail -n 1)"
fi
export HONKER_EXT_PATH
export GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
export GOCACHE="${GOCACHE:-/tmp/honker-go-cache}"

cd "$here"
go version
test -z "$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
go vet ./...
echo "== go test -race (extension's cancel mechanism when present)"
go test -race -count=1 ./...
echo "== go test -race (bounded-wait fallback forced)"
HONKER_GO_NO_CANCEL=1 go test -race -count=1 ./...
