#!/usr/bin/env bash
# Session stores compared on GET /auth/me (cookie): memory, Redis, Redis with the coherent read
# cache (one instance each, users in one SQLite file).
# Loopback only; every loop is bounded; every process started is killed on exit.
#
#   bash bench/stores.sh
#
# Knobs: DURATION (s per wrk run, 8), ROUNDS (3), WARMUP (2), CONNS (32), THREADS (wrk, 1),
# REDIS_URL (redis://127.0.0.1:6379/0), SKIP_BUILD (1 = use the existing binary), BIN (default
# target/release/vestibule).
# Output: bench/results/stores.txt.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-1}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
BIN="${BIN:-$ROOT/target/release/vestibule}"
OUT="$ROOT/bench/results/stores.txt"
PREFIX="vestibule-bench:$$:"

log() { printf '[stores] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PIDS=()
TMP="$(mktemp -d -t vestibule-stores.XXXXXX)"
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" 2>/dev/null \
        | head -n 100000 | while read -r k; do redis-cli -u "$REDIS_URL" del "$k" >/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v redis-cli >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get install -y "${missing[@]}" >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null)
fi
redis-cli -u "$REDIS_URL" ping >/dev/null || die "Redis at $REDIS_URL does not answer"
[ "$SKIP_BUILD" = 1 ] || cargo build --release -p vestibule-cli >&2
[ -x "$BIN" ] || die "no $BIN"

# One user in a shared SQLite file (users only; sessions are in the store under test).
printf 'store load passphrase 1\n' | (cd "$TMP" && "$BIN" --database "$TMP/users.db" user add bench --password-stdin >/dev/null)

start() { # name port store cache
    local dir="$TMP/$1"
    mkdir -p "$dir"
    cat >"$dir/vestibule.toml" <<TOML
database_url = "$TMP/users.db"
[session]
store = "$3"
redis_cache = $4
redis_prefix = "$PREFIX"
TOML
    (cd "$dir" && VESTIBULE_LOG=warn exec "$BIN" serve --listen "127.0.0.1:$2") >"$dir/log" 2>&1 &
    PIDS+=("$!")
    PID_OF[$1]=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$2/readyz" && return 0
        sleep 0.1
    done
    die "$1 did not start: $(cat "$dir/log")"
}

cookie() { # port → "Cookie: vestibule_session=…"
    curl -s -o /dev/null --max-time 10 -c "$TMP/jar.$1" -H 'content-type: application/json' \
        -d '{"username":"bench","password":"store load passphrase 1"}' "http://127.0.0.1:$1/auth/login"
    local v
    v=$(awk -F'\t' '$6 == "vestibule_session" { print $7 }' "$TMP/jar.$1" | tail -n1)
    [ -n "$v" ] || die "no session cookie from port $1"
    echo "Cookie: vestibule_session=$v"
}

# CPU time (user + system ticks from /proc/PID/stat) of the instance under load and of
# redis-server, per 10,000 requests answered: less sensitive than req/s to what else the two
# cores are doing, and it shows what the store costs on both sides of the connection.
declare -A PID_OF
HZ=$(getconf CLK_TCK)
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | awk -F: '/^process_id/ { print $2 }' | tr -d '\r')
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ms_per_10k() { # ticks requests
    awk -v d="$1" -v n="$2" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f", d * 1000 / hz / n * 10000; else print "?" }'
}

RESULTS="$TMP/results"
: >"$RESULTS"
wrk_rps() { # name url cookie instance
    local out v0 v1 r0 r1 reqs
    v0=$(ticks "${PID_OF[$4]}"); r0=$(ticks "$REDIS_PID")
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$2" -H "$3")
    v1=$(ticks "${PID_OF[$4]}"); r1=$(ticks "$REDIS_PID")
    reqs=$(echo "$out" | awk '/ requests in / { print $1 }')
    echo "$out" >>"$TMP/raw"
    local rps non2xx
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$rps" "${non2xx:-0}" "$(ms_per_10k $((v1 - v0)) "$reqs")" \
        "$(ms_per_10k $((r1 - r0)) "$reqs")" >>"$RESULTS"
    log "$1: $rps req/s (non-2xx: ${non2xx:-0})"
}

start memory 18441 memory false
start redis 18442 "$REDIS_URL" false
start cached 18443 "$REDIS_URL" true
C_MEM=$(cookie 18441); C_RED=$(cookie 18442); C_CAC=$(cookie 18443)

for n in memory:18441:C_MEM redis:18442:C_RED cached:18443:C_CAC; do
    IFS=: read -r name port var <<<"$n"
    wrk -t1 -c8 -d"${WARMUP}s" "http://127.0.0.1:$port/auth/me" -H "${!var}" >/dev/null
done
for r in $(seq 1 "$ROUNDS"); do
    wrk_rps "memory-r$r" "http://127.0.0.1:18441/auth/me" "$C_MEM" memory
    wrk_rps "redis-r$r" "http://127.0.0.1:18442/auth/me" "$C_RED" redis
    wrk_rps "cached-redis-r$r" "http://127.0.0.1:18443/auth/me" "$C_CAC" cached
done

{
    echo "# bench/stores.sh  $(date -u +%FT%TZ)  commit $(git rev-parse --short HEAD)  nproc $(nproc)"
    echo "# wrk -t$THREADS -c$CONNS -d${DURATION}s GET /auth/me with a session cookie; Redis $(redis-cli -u "$REDIS_URL" info server | awk -F: '/redis_version/ {print $2}' | tr -d '\r')"
    echo "# no CPU pinning: wrk, vestibule and redis-server share the 2 cores"
    echo "# cpu ms/10k: CPU time per 10,000 requests of the instance (vestibule) and of redis-server"
    printf 'run\treq/s\tnon-2xx\tvestibule cpu ms/10k\tredis cpu ms/10k\n'
    cat "$RESULTS"
    awk -F'\t' '
        {
            name = $1; sub(/-r[0-9]+$/, "", name)
            r = substr($1, length(name) + 3) + 0
            by[name, r] = $2; cpu[name, r] = $4 + $5; if (r > n) n = r
        }
        END {
            for (i = 1; i <= n; i++) {
                rr = rr sprintf(" %.2f", by["redis", i] / by["memory", i])
                cr = cr sprintf(" %.2f", by["cached-redis", i] / by["memory", i])
                if (cpu["memory", i] > 0) {
                    rc = rc sprintf(" %.2f", cpu["redis", i] / cpu["memory", i])
                    cc = cc sprintf(" %.2f", cpu["cached-redis", i] / cpu["memory", i])
                }
            }
            print "per-round redis/memory:" rr "   (target >= 0.50)"
            print "per-round cached-redis/memory:" cr "   (target >= 0.90)"
            print "per-round CPU per request (vestibule + redis-server), redis/memory:" rc
            print "per-round CPU per request (vestibule + redis-server), cached-redis/memory:" cc
        }' "$RESULTS"
} | tee "$OUT"
