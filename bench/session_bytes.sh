#!/usr/bin/env bash
# Bytes per logged-in session in the in-memory read cache and in Redis, at 10k, 100k and 1M
# sessions (bench/session-bytes: RSS of its own process around CachedStore inserts; Redis's
# used_memory around RedisStore creates under a fresh prefix, deleted afterwards). Memory
# figures do not depend on what else the machine runs. Redis on loopback only.
#
#   bash bench/session_bytes.sh
#
# Knobs: COUNTS (default "10000 100000 1000000"), REDIS_URL (redis://127.0.0.1:6379/),
# SKIP_REDIS=1. Output: bench/results/session-bytes.txt.
set -euo pipefail
export LC_ALL=C
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
COUNTS="${COUNTS:-10000 100000 1000000}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/}"
OUT="$ROOT/bench/results/session-bytes.txt"
BENCH_NAME=session-bytes
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# The main workspace's target directory: the library's dependencies are built once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -q --manifest-path bench/session-bytes/Cargo.toml
BIN="$CARGO_TARGET_DIR/release/vestibule-bench-session-bytes"
{
    echo "# bytes per logged-in session ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
    echo "# store      sessions  bytes/session"
    for n in $COUNTS; do
        "$BIN" cache "$n" | awk '{printf "%-10s %9d  %d\n", $1, $2, $3}'
    done
    if [ "${SKIP_REDIS:-0}" != 1 ]; then
        for n in $COUNTS; do
            "$BIN" redis "$n" "$REDIS_URL" | awk '{printf "%-10s %9d  %d\n", $1, $2, $3}'
        done
    fi
} | tee "$OUT"
log "written $OUT"
