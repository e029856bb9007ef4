#!/usr/bin/env bash
# Resident memory of `vestibule serve` with the default config: idle, after a bounded load of
# logins and GET /auth/me, and after a quiet period (does it give the memory back?).
# Memory figures come from /proc/PID/status and smaps_rollup, which do not depend on what else
# the machine runs (unlike req/s). Loopback only; every loop is bounded in count and time.
#
#   bash bench/memory.sh
#
# Knobs: LOGINS (logins in the load, default 40), ME (GET /auth/me requests, default 2000),
# QUIET (s of quiet before the last reading, default 20), SETTLE (s after start, default 3),
# VEST_BIN (default $CARGO_TARGET_DIR or target/, release), SKIP_BUILD=1, PORT (18471).
# Output: bench/results/memory.txt.
set -euo pipefail
export LC_ALL=C
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOGINS="${LOGINS:-40}"
ME="${ME:-2000}"
QUIET="${QUIET:-20}"
SETTLE="${SETTLE:-3}"
PORT="${PORT:-18471}"
HOST=127.0.0.1 # loopback only
VEST_BIN="${VEST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/vestibule}"
OUT="$ROOT/bench/results/memory.txt"
PASSWORD='quiet-harbour-lantern-42'
BENCH_NAME=memory
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
command -v curl >/dev/null || apt_install curl >&2
if [ "${SKIP_BUILD:-0}" != 1 ]; then cargo build --release -q -p vestibule-cli; fi
[ -x "$VEST_BIN" ] || die "no $VEST_BIN"

(cd "$TMP" && printf '%s\n' "$PASSWORD" | "$VEST_BIN" --database "$TMP/m.db" user add bench \
    --password-stdin) >/dev/null 2>&1 || die "user add failed"
(cd "$TMP" && exec env VESTIBULE_LOG=warn "$VEST_BIN" --database "$TMP/m.db" serve \
    --listen "$HOST:$PORT") >"$TMP/vestibule.log" 2>&1 &
PID=$!
PIDS+=("$PID")
wait_http "http://$HOST:$PORT/healthz" "$PID" "$TMP/vestibule.log"
sleep "$SETTLE"

# "label" -> one line: RSS, anonymous RSS, PSS (kB), threads
reading() {
    local rss anon pss thr
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status")
    anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$PID/status")
    thr=$(awk '/^Threads:/ { print $2 }' "/proc/$PID/status")
    pss=$(awk '/^Pss:/ { print $2 }' "/proc/$PID/smaps_rollup" 2>/dev/null || echo '?')
    printf '%-34s rss %7s kB  anon %7s kB  pss %7s kB  threads %s\n' "$1" "$rss" "$anon" "$pss" "$thr"
}
R=()
R+=("$(reading "idle (${SETTLE}s after ready)")")

BODY="{\"username\":\"bench\",\"password\":\"$PASSWORD\"}"
cookie=""
ok=0
for ((i = 0; i < LOGINS; i++)); do # sequential logins, each bounded
    h=$(curl -s -D - -o /dev/null --max-time 10 -H 'content-type: application/json' -d "$BODY" \
        "http://$HOST:$PORT/auth/login" | tr -d '\r') || true
    c=$(printf '%s\n' "$h" | sed -n 's/^[Ss]et-[Cc]ookie: \(vestibule_session=[^;]*\).*/\1/p' | head -1)
    if [ -n "$c" ]; then cookie=$c; ok=$((ok + 1)); fi
done
[ -n "$cookie" ] || die "no login succeeded"
R+=("$(reading "after $ok/$LOGINS logins")")
cfg="$TMP/me.cfg"
: >"$cfg"
for ((i = 0; i < ME; i++)); do printf 'url = "http://%s:%s/auth/me"\noutput = "/dev/null"\n' "$HOST" "$PORT" >>"$cfg"; done
printf 'header = "Cookie: %s"\n' "$cookie" >>"$cfg"
curl -s --max-time 120 -w '%{http_code}\n' -K "$cfg" >"$TMP/codes" || true
me_ok=$(grep -c '^200$' "$TMP/codes" || true)
R+=("$(reading "after $me_ok/$ME GET /auth/me")")
for t in 5 "$QUIET"; do
    sleep "$t"
done
R+=("$(reading "after $((5 + QUIET)) s quiet")")

# How much of the release build's code order (crates/vestibule-cli/build.rs) this binary still
# has: the list names symbols whose hashes change with a dependency or compiler upgrade, and lld
# skips the names it no longer finds. Far below all of them: rerun bench/code_order.sh.
ORDER_FILE="$ROOT/crates/vestibule-cli/code-order.txt"
order_line="code order: no list"
if [ -f "$ORDER_FILE" ] && command -v nm >/dev/null; then
    listed=$(wc -l <"$ORDER_FILE")
    found=$(nm --defined-only "$VEST_BIN" 2>/dev/null | awk 'NR == FNR { want[$1] = 1; next }
        ($3 in want) && !($3 in seen) { seen[$3] = 1; n++ } END { print n + 0 }' "$ORDER_FILE" -)
    order_line="code order: $found of $listed listed functions are in this binary"
    [ "$found" -ge $((listed * 9 / 10)) ] || order_line+=" (stale: rerun bench/code_order.sh)"
fi

{
    echo "Vestibule resident memory — default config (SQLite + cached store), release build"
    echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git:    $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet -- crates 2>/dev/null || echo ' (with local changes)')"
    echo "binary: $VEST_BIN"
    echo "host:   $(uname -sr), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg) (memory figures do not depend on load)"
    echo
    printf '%s\n' "${R[@]}"
    echo "$order_line"
    echo
    echo "rss = VmRSS (anon + file-backed: the binary's own pages are most of the file part), anon = RssAnon"
} | tee "$OUT.new" >&2
mv "$OUT.new" "$OUT"
