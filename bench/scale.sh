#!/usr/bin/env bash
# Scale-out: two `vestibule serve` instances sharing Redis (sessions, coherent read cache) and
# PostgreSQL (users) against one instance, GET /auth/me with a session cookie.
# Loopback only; every loop is bounded; every process started is killed and the schema and
# Redis keys of the run are removed on exit.
#
#   bash bench/scale.sh
#
# The load is split round-robin per connection: one wrk process per instance, each with half of
# the connections (wrk cannot spread one process's connections over two hosts). The single
# instance gets all the connections from one wrk with the same total.
#
# Two layouts are measured, because this machine has 2 cores and the load generator, Redis and
# PostgreSQL run on them too:
#   pinned:   one instance on core 0 (taskset; Tokio sizes its pool from the affinity mask) vs
#             two instances on cores 0 and 1; wrk, Redis and PostgreSQL float.
#   unpinned: every process floats over both cores.
#
# Besides req/s, each run reports the CPU time (user + system, /proc/PID/stat) both instances
# spent per 10,000 requests answered: the figure that shows whether sharing the stores costs
# anything, since on 2 cores two instances cannot add throughput (target: two/one <= 1.10).
#
# Knobs: DURATION (s per wrk run, 8), ROUNDS (3), WARMUP (2), CONNS (total connections, 32),
# REDIS_URL, PG_URL, SKIP_BUILD (1 = use the existing binary), BIN (default target/release/vestibule).
# Output: bench/results/scale.txt.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-32}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
SKIP_BUILD="${SKIP_BUILD:-0}"
BIN="${BIN:-$ROOT/target/release/vestibule}"
OUT="$ROOT/bench/results/scale.txt"
RUN_ID="b$$x$(date +%s)"
PREFIX="vestibule-scale:$RUN_ID:"
SCHEMA="vestibule_scale_$RUN_ID"

log() { printf '[scale] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PIDS=()
TMP="$(mktemp -d -t vestibule-scale.XXXXXX)"
stop_all() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_all
    psql "$PG_URL" -qAtc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" 2>/dev/null \
        | head -n 100000 | while read -r k; do redis-cli -u "$REDIS_URL" del "$k" >/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v psql >/dev/null || missing+=(postgresql-client)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get install -y "${missing[@]}" >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null)
fi
redis-cli -u "$REDIS_URL" ping >/dev/null || die "Redis at $REDIS_URL does not answer"
psql "$PG_URL" -qAtc "CREATE SCHEMA $SCHEMA" >/dev/null || die "PostgreSQL at $PG_URL does not answer"
[ "$SKIP_BUILD" = 1 ] || cargo build --release -p vestibule-cli >&2
[ -x "$BIN" ] || die "no $BIN"

DB_URL="$PG_URL?options[search_path]=$SCHEMA"
printf 'a long enough passphrase\n' | (cd "$TMP" && "$BIN" --database "$DB_URL" user add bench --password-stdin >/dev/null)

start() { # name port cpus ("" = float)
    local dir="$TMP/$1"
    mkdir -p "$dir"
    cat >"$dir/vestibule.toml" <<TOML
database_url = "$DB_URL"
[session]
store = "$REDIS_URL"
redis_cache = true
redis_prefix = "$PREFIX"
TOML
    local pin=()
    [ -z "$3" ] || pin=(taskset -c "$3")
    (cd "$dir" && VESTIBULE_LOG=warn exec "${pin[@]}" "$BIN" serve --listen "127.0.0.1:$2") >"$dir/log" 2>&1 &
    PIDS+=("$!")
    INSTANCES+=("$!")
    for _ in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$2/readyz" && return 0
        sleep 0.1
    done
    die "$1 did not start: $(cat "$dir/log")"
}

cookie() { # port → "Cookie: vestibule_session=…" (one login; the session is shared by both)
    curl -s -o /dev/null --max-time 10 -c "$TMP/jar" -H 'content-type: application/json' \
        -H 'sec-fetch-site: same-origin' \
        -d '{"username":"bench","password":"a long enough passphrase"}' "http://127.0.0.1:$1/auth/login"
    local v
    v=$(awk -F'\t' '$6 == "vestibule_session" { print $7 }' "$TMP/jar" | tail -n1)
    [ -n "$v" ] || die "no session cookie from port $1"
    echo "Cookie: vestibule_session=$v"
}

rps_of() { awk '/Requests\/sec/ { print $2 }'; }
reqs_of() { awk '/ requests in / { print $1 }'; }

# CPU time of the running instances (user + system, from /proc/PID/stat, in clock ticks): what
# shared state costs shows here even on 2 cores, where two instances cannot show a throughput
# gain (the load generator, Redis and PostgreSQL need the same cores).
HZ=$(getconf CLK_TCK)
INSTANCES=()
cpu_ticks() {
    local pid total=0
    for pid in "${INSTANCES[@]}"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$total"
}
ms_per_10k() { # ticks requests
    awk -v d="$1" -v n="$2" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f", d * 1000 / hz / n * 10000; else print "?" }'
}
non2xx_of() { awk '/Non-2xx/ { n = $NF } END { print n + 0 }'; }

RESULTS="$TMP/results"
: >"$RESULTS"
one() { # label port cookie
    local out t0 t1
    t0=$(cpu_ticks)
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$2/auth/me" -H "$3")
    t1=$(cpu_ticks)
    echo "$out" >>"$TMP/raw"
    printf '%s\t%s\t%s\t%s\n' "$1" "$(echo "$out" | rps_of)" "$(echo "$out" | non2xx_of)" \
        "$(ms_per_10k $((t1 - t0)) "$(echo "$out" | reqs_of)")" >>"$RESULTS"
    log "$1: $(echo "$out" | rps_of) req/s"
}
two() { # label portA portB cookie
    local half=$((CONNS / 2)) t0 t1
    t0=$(cpu_ticks)
    wrk -t1 -c"$half" -d"${DURATION}s" "http://127.0.0.1:$2/auth/me" -H "$4" >"$TMP/a.out" &
    local wa=$!
    wrk -t1 -c"$half" -d"${DURATION}s" "http://127.0.0.1:$3/auth/me" -H "$4" >"$TMP/b.out" &
    local wb=$!
    wait "$wa" "$wb"
    t1=$(cpu_ticks)
    cat "$TMP/a.out" "$TMP/b.out" >>"$TMP/raw"
    local ra rb na nb
    ra=$(rps_of <"$TMP/a.out"); rb=$(rps_of <"$TMP/b.out")
    na=$(non2xx_of <"$TMP/a.out"); nb=$(non2xx_of <"$TMP/b.out")
    local reqs=$(($(reqs_of <"$TMP/a.out") + $(reqs_of <"$TMP/b.out")))
    printf '%s\t%s\t%s\t%s\n' "$1" "$(awk -v a="$ra" -v b="$rb" 'BEGIN { printf "%.2f", a + b }')" "$((na + nb))" \
        "$(ms_per_10k $((t1 - t0)) "$reqs")" >>"$RESULTS"
    log "$1: $ra + $rb req/s"
}

layout() { # name cpuA cpuB
    start "$1-a" 18451 "$2"
    start "$1-b" 18452 "$3"
    local c
    c=$(cookie 18451)
    # The same session must be authenticated on both (shared Redis).
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "$c" http://127.0.0.1:18452/auth/me | grep -q 200 \
        || die "session from A is not authenticated on B"
    wrk -t1 -c8 -d"${WARMUP}s" http://127.0.0.1:18451/auth/me -H "$c" >/dev/null
    wrk -t1 -c8 -d"${WARMUP}s" http://127.0.0.1:18452/auth/me -H "$c" >/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        one "$1-one-r$r" 18451 "$c"
        two "$1-two-r$r" 18451 18452 "$c"
    done
    stop_all
    INSTANCES=()
}

layout pinned 0 1
layout unpinned "" ""

{
    echo "# bench/scale.sh  $(date -u +%FT%TZ)  commit $(git rev-parse --short HEAD)  nproc $(nproc)"
    echo "# GET /auth/me with a session cookie; sessions in Redis (coherent cache on), users in PostgreSQL"
    echo "# one = one instance, wrk -t1 -c$CONNS; two = two instances, one wrk -t1 -c$((CONNS / 2)) each (split per connection)"
    echo "# pinned: instance A on core 0, B on core 1 (taskset), wrk/Redis/PostgreSQL float; unpinned: all float"
    echo "# cpu ms/10k = user + system CPU time of both instances (/proc/PID/stat) per 10,000 requests answered"
    printf 'run\treq/s\tnon-2xx\tcpu ms/10k\n'
    cat "$RESULTS"
    awk -F'\t' '
        {
            name = $1; sub(/-r[0-9]+$/, "", name)
            r = substr($1, length(name) + 3) + 0
            by[name, r] = $2; cpu[name, r] = $4; if (r > n) n = r
        }
        END {
            for (i = 1; i <= n; i++) {
                p = p sprintf(" %.2f", by["pinned-two", i] / by["pinned-one", i])
                u = u sprintf(" %.2f", by["unpinned-two", i] / by["unpinned-one", i])
                if (cpu["pinned-one", i] > 0) pc = pc sprintf(" %.2f", cpu["pinned-two", i] / cpu["pinned-one", i])
                if (cpu["unpinned-one", i] > 0) uc = uc sprintf(" %.2f", cpu["unpinned-two", i] / cpu["unpinned-one", i])
            }
            print "per-round two/one, pinned:" p "   (target >= 1.70)"
            print "per-round two/one, unpinned:" u
            print "per-round CPU per 10k requests, two/one, pinned:" pc "   (target <= 1.10)"
            print "per-round CPU per 10k requests, two/one, unpinned:" uc "   (target <= 1.10)"
        }' "$RESULTS"
} | tee "$OUT"
