#!/usr/bin/env bash
# CI for the Python binding: build and install the package (a wheel carrying libhonker_ext.so) into
# a venv of each kind of Python, then mypy --strict, ruff, and pytest on both:
#   - Debian's /usr/bin/python3 (stdlib sqlite3 loads extensions),
#   - the python3 first on PATH (pyenv here: no extension loading, so pysqlite3-binary is used).
# Run from anywhere; HONKER_EXT_PATH (the built extension) is used when set, else cargo xtask ext.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${HONKER_PY_CI_DIR:-/tmp/honker-py-ci}

if [ -z "${HONKER_EXT_PATH:-}" ] || [ ! -f "$HONKER_EXT_PATH" ]; then
    HONKER_EXT_PATH=$(cd "$ROOT" && cargo xtask ext | tail -n 1)
fi
export HONKER_EXT_PATH
unset HONKER_EXT HONKER_DRIVER  # the tests must find the library the wheel carries

if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
fi

PATH_PY=$(command -v python3)
pythons=("debian:/usr/bin/python3")
if [ "$(readlink -f "$PATH_PY")" != "$(readlink -f /usr/bin/python3)" ]; then
    pythons+=("path:$PATH_PY")
else
    echo "ci.sh: the python3 on PATH is Debian's; testing the PyPI-driver path with HONKER_DRIVER=pysqlite3"
    pythons+=("pysqlite3:/usr/bin/python3")
fi

status=0
for entry in "${pythons[@]}"; do
    name=${entry%%:*}
    py=${entry#*:}
    venv="$WORK/$name"
    echo "=== $name: $py ($("$py" --version 2>&1))"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$HERE[test,sqlalchemy,django]" mypy ruff pytest-timeout
    # Installed, not in place: the tests import the package from site-packages.
    rm -rf "$HERE/build" "$HERE/src/honker.egg-info"
    if [ "$name" = debian ]; then
        (cd "$HERE" && "$venv/bin/mypy" --strict src/honker) || status=1
        (cd "$HERE" && "$venv/bin/ruff" check src) || status=1
    fi
    extra=()
    [ "$name" = pysqlite3 ] && export HONKER_DRIVER=pysqlite3
    (cd "$HERE" && "$venv/bin/python" -m pytest -q -p no:cacheprovider --timeout 300 tests "${extra[@]}") || status=1
    unset HONKER_DRIVER
done
exit $status
