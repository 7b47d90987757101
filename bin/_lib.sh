# Shared by bin/* scripts: find Python 3.11+, keep .venv installed, start local services.
# Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "pgsched needs Python 3.11 or newer on PATH" >&2
    return 1
}

# ensure_venv EXTRAS: create .venv if missing and (re)install the package when pyproject.toml changed.
ensure_venv() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        "$(find_python)" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
    local stamp="$VENV/.pgsched-installed-$extras"
    local want
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "installing pgsched[$extras] into .venv ..." >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$extras]"
        echo "$want" >"$stamp"
    fi
    # Bytecode for every module, as `pip install` writes for a deployed package: under PYTHONDONTWRITEBYTECODE=1
    # each cold pgsched process (the tests', the bench's workers) would otherwise compile them all at its start.
    # Fresh files are skipped.
    "$VENV/bin/python" -m compileall -q "$ROOT/pgsched" >/dev/null || true
}

# Start the machine's PostgreSQL and Redis when they are installed but stopped. Never fails:
# the tests fall back to an embedded PostgreSQL, and Redis tests skip when none can run.
ensure_services() {
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header 2>/dev/null | while read -r ver name _port status _rest; do
            if [ "$status" != "online" ] && [ "${PGSCHED_TEST_SERVER:-}" != "embedded" ]; then
                echo "starting PostgreSQL $ver/$name ..." >&2
                pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >/dev/null 2>&1 || true
            fi
        done
    fi
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
            echo "starting Redis ..." >&2
            redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
        fi
    fi
}
