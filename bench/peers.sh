#!/usr/bin/env bash
# GET /auth/me on Vestibule beside the stacks a team would use instead, in one run, interleaved:
#
#   bare        bench/baseline's constant JSON handler (the ceiling: axum with nothing to do)
#   peer        axum + tower-sessions (memory store), session cookie (bench/baseline `peer`)
#   peerbearer  the same peer's hand-written bearer lookup
#   peerfull    the same axum peer doing the per-request work Vestibule's /auth/me promises (token
#               hashed before the lookup, derived and masked CSRF token, request id, security
#               headers; hand-written memory map, no durability): the floor of the stack for `me`
#               (bench/baseline `peerfull`)
#   peerfullbearer  the same with a bearer token, hashed before the lookup: the floor for `bearer`
#   me          Vestibule /auth/me with a session cookie, default store (SQLite + read cache)
#   bearer      Vestibule /auth/me with a bearer session token
#   django      Django + DRF, cache sessions on LocMem, gunicorn sync, one worker
#               (bench/django-peer, installed into bench/django-peer/.venv from PyPI)
#
# Every server runs pinned to SERVER_CPUS and wrk (-t1) to WRK_CPUS, so the load generator
# never competes with the server for a core. Rounds rotate the order, so a drift of the host's
# speed touches every target alike; read the ratios, which are taken round by round. Resident
# memory of each server is read from /proc idle (after start-up and one login), after the load,
# and after QUIET s of quiet (all servers idle at once): does the stack give the memory back?
# With CONNS=200 this is the floor, on the same stack and allocator, for soak.mjs's "RSS returns
# to within 10 % of idle".
# Loopback only; every run is bounded (DURATION s).
#
#   bash bench/peers.sh
#
# Knobs: DURATION (s per run, 10), ROUNDS (3), WARMUP (s, 2), CONNS (32), WORKERS (runtime
# threads per Rust server, default the number of SERVER_CPUS), SERVER_CPUS (0), WRK_CPUS (1),
# TARGETS (default all above), QUIET (s of quiet before the last memory reading, 0 = none,
# default 30), OUT (default bench/results/peers.txt), SKIP_BUILD=1, VEST_BIN, SPLIT (1 = after
# the rounds, one more run per target under `perf stat` and `perf record -e cpu-clock`: CPU
# time per request, split into the server's own code and the kernel (loopback TCP, epoll), and
# context switches; this shows where a wall-clock gap comes from that instruction counts do not
# explain).
# Output: $OUT. The memory floor for the soak: CONNS=200 TARGETS="bare peer peerfull me"
# ROUNDS=1 DURATION=60 QUIET=60 OUT=bench/results/peers-c200.txt.
set -euo pipefail
export LC_ALL=C
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-2}"
QUIET="${QUIET:-30}"
CONNS="${CONNS:-32}"
SERVER_CPUS="${SERVER_CPUS:-0}"
WRK_CPUS="${WRK_CPUS:-1}"
WORKERS="${WORKERS:-$(awk -F, '{ print NF }' <<<"$SERVER_CPUS")}"
TARGETS_LIST="${TARGETS:-bare peer peerbearer peerfull peerfullbearer me bearer django}"
HOST=127.0.0.1 # loopback only
PORT0=18460
VEST_BIN="${VEST_BIN:-$ROOT/target/release/vestibule}"
BASE_MANIFEST="$ROOT/bench/baseline/Cargo.toml"
BASE_BIN="${BASE_BIN:-$ROOT/bench/baseline/target/release/bench-baseline}"
DJANGO_DIR="$ROOT/bench/django-peer"
OUT="${OUT:-$ROOT/bench/results/peers.txt}"
PASSWORD='quiet-harbour-lantern-42'
BENCH_NAME=peers
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

missing=()
for tool in wrk curl taskset; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${SPLIT:-0}" = 1 ] && ! command -v perf >/dev/null; then missing+=(linux-perf); fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    apt_install "${missing[@]/taskset/util-linux}" >&2
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building release binaries"
    cargo build --release -q -p vestibule-cli
    cargo build --release -q --manifest-path "$BASE_MANIFEST"
fi
[ -x "$VEST_BIN" ] || die "no $VEST_BIN"
[ -x "$BASE_BIN" ] || die "no $BASE_BIN"
case " $TARGETS_LIST " in *" django "*)
    if [ ! -x "$DJANGO_DIR/.venv/bin/gunicorn" ]; then
        log "installing Django, DRF and gunicorn into bench/django-peer/.venv (PyPI)"
        python3 -m venv "$DJANGO_DIR/.venv"
        "$DJANGO_DIR/.venv/bin/pip" install -q -r "$DJANGO_DIR/requirements.txt" >&2
    fi
    ;;
esac

PIN_SRV=(taskset -c "$SERVER_CPUS")
PIN_WRK=(taskset -c "$WRK_CPUS")
declare -A PORT PID_OF HDR RSS_IDLE ANON_IDLE RSS_LOAD RSS_QUIET ANON_QUIET
n=0
for t in $TARGETS_LIST; do
    PORT[$t]=$((PORT0 + n))
    n=$((n + 1))
done

# Starts target $1 on its port and logs in where it needs a credential (HDR: wrk's header).
start() {
    local t=$1 port=${PORT[$1]} url="http://$HOST:${PORT[$1]}"
    case "$t" in
    bare)
        "${PIN_SRV[@]}" env TOKIO_WORKER_THREADS="$WORKERS" "$BASE_BIN" "$HOST:$port" >"$TMP/$t.log" 2>&1 &
        ;;
    peer | peerbearer)
        "${PIN_SRV[@]}" env TOKIO_WORKER_THREADS="$WORKERS" "$BASE_BIN" "$HOST:$port" peer >"$TMP/$t.log" 2>&1 &
        ;;
    peerfull | peerfullbearer)
        "${PIN_SRV[@]}" env TOKIO_WORKER_THREADS="$WORKERS" "$BASE_BIN" "$HOST:$port" peerfull >"$TMP/$t.log" 2>&1 &
        ;;
    me | bearer)
        (cd "$TMP" && printf '%s\n' "$PASSWORD" | "$VEST_BIN" --database "$TMP/$t.db" user add bench \
            --password-stdin) >/dev/null 2>&1 || die "user add failed"
        (cd "$TMP" && exec "${PIN_SRV[@]}" env TOKIO_WORKER_THREADS="$WORKERS" VESTIBULE_LOG=warn \
            "$VEST_BIN" --database "$TMP/$t.db" serve --listen "$HOST:$port") >"$TMP/$t.log" 2>&1 &
        ;;
    django)
        "${PIN_SRV[@]}" "$DJANGO_DIR/.venv/bin/gunicorn" --chdir "$DJANGO_DIR" -w 1 \
            -b "$HOST:$port" --log-level warning peer:application >"$TMP/$t.log" 2>&1 &
        ;;
    *) die "unknown target $t" ;;
    esac
    PID_OF[$t]=$!
    PIDS+=("${PID_OF[$t]}")
    wait_http "$url/auth/me" "${PID_OF[$t]}" "$TMP/$t.log" 30
    local body cookie
    case "$t" in
    bare) HDR[$t]="" ;;
    peer | peerfull | django)
        curl -s -c "$TMP/$t.jar" --max-time 10 -X POST "$url/auth/login" >/dev/null
        cookie=$(awk '$6 == "id" || $6 == "sessionid" { print $6 "=" $7 }' "$TMP/$t.jar" | head -1)
        [ -n "$cookie" ] || die "$t: login gave no session cookie"
        HDR[$t]="Cookie: $cookie"
        ;;
    peerbearer | peerfullbearer)
        body=$(curl -s --max-time 10 -X POST "$url/auth/login")
        HDR[$t]="Authorization: Bearer $(printf '%s' "$body" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
        ;;
    me)
        cookie=$(curl -s -D - -o /dev/null --max-time 10 -H 'content-type: application/json' \
            -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" "$url/auth/login" | tr -d '\r' |
            sed -n 's/^[Ss]et-[Cc]ookie: \(vestibule_session=[^;]*\).*/\1/p' | head -1)
        [ -n "$cookie" ] || die "me: login gave no session cookie: $(tail -c 600 "$TMP/$t.log")"
        HDR[$t]="Cookie: $cookie"
        ;;
    bearer)
        body=$(curl -s --max-time 10 -H 'content-type: application/json' \
            -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\",\"transport\":\"bearer\"}" "$url/auth/login")
        HDR[$t]="Authorization: Bearer $(printf '%s' "$body" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
        ;;
    esac
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 ${HDR[$t]:+-H "${HDR[$t]}"} "$url/auth/me")
    [ "$code" = 200 ] || die "$t: /auth/me answered $code with its credential"
}

# MB of a /proc/PID/status field (VmRSS: the resident set; RssAnon: its anonymous part, heap and
# stacks, what the allocator holds) over every process of a target (gunicorn's master and
# worker together).
status_mb() { # pid field
    local pid=$1 field=$2 total=0 p
    for p in $pid $(pgrep -P "$pid" || true); do
        total=$((total + $(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    awk -v k="$total" 'BEGIN { printf "%.1f", k / 1024 }'
}
rss_mb() { status_mb "$1" VmRSS; }
anon_mb() { status_mb "$1" RssAnon; }

for t in $TARGETS_LIST; do
    log "starting $t on port ${PORT[$t]}"
    start "$t"
done
sleep 2
for t in $TARGETS_LIST; do
    RSS_IDLE[$t]=$(rss_mb "${PID_OF[$t]}")
    ANON_IDLE[$t]=$(anon_mb "${PID_OF[$t]}")
done

run_wrk() { # target name duration
    local t=$1 name=$2 d=$3
    local cmd=(wrk -t1 "-c$CONNS" "-d${d}s" --latency --timeout 5s)
    if [ -n "${HDR[$t]}" ]; then cmd+=(-H "${HDR[$t]}"); fi
    timeout $((d + 30)) "${PIN_WRK[@]}" "${cmd[@]}" "http://$HOST:${PORT[$t]}/auth/me" \
        >"$TMP/wrk-$name.txt" 2>&1 || die "wrk [$name] failed: $(cat "$TMP/wrk-$name.txt")"
    if grep -q 'Non-2xx' "$TMP/wrk-$name.txt"; then
        die "$name: some answers were not 200: $(grep 'Non-2xx' "$TMP/wrk-$name.txt")"
    fi
}

read -r -a ORDER <<<"$TARGETS_LIST"
for t in "${ORDER[@]}"; do run_wrk "$t" "warm-$t" "$WARMUP"; done
for r in $(seq 1 "$ROUNDS"); do
    # Rotate the order by one each round.
    rot=$(((r - 1) % ${#ORDER[@]}))
    for t in "${ORDER[@]:$rot}" "${ORDER[@]:0:$rot}"; do
        log "round $r: $t"
        run_wrk "$t" "$t-r$r" "$DURATION"
    done
done

# SPLIT=1: one more run per target under perf. Per request: CPU time (task-clock over the
# requests wrk completed), the kernel's share of the samples, context switches.
declare -A SPLIT_LINE
split_run() { # target
    local t=$1 pids d=$DURATION
    pids=$(echo "${PID_OF[$t]}" $(pgrep -P "${PID_OF[$t]}" || true) | tr ' ' ',')
    perf stat -x, -e task-clock,context-switches -p "$pids" -o "$TMP/stat-$t.csv" -- sleep "$d" &
    local stat=$!
    perf record -q -e cpu-clock -p "$pids" -o "$TMP/perf-$t.data" -- sleep "$d" >/dev/null 2>&1 &
    local rec=$!
    run_wrk "$t" "split-$t" "$d"
    wait "$stat" "$rec" || die "perf failed for $t: $(cat "$TMP/stat-$t.csv")"
    local reqs cpu_ms cs kernel
    reqs=$(awk '/requests in/ { print $1 }' "$TMP/wrk-split-$t.txt")
    cpu_ms=$(awk -F, '$3 ~ /^task-clock/ { print $1 }' "$TMP/stat-$t.csv")
    cs=$(awk -F, '$3 ~ /^context-switches/ { print $1 }' "$TMP/stat-$t.csv")
    kernel=$(perf report -i "$TMP/perf-$t.data" --sort dso -q -g none --stdio 2>/dev/null |
        awk '/\[kernel\.kallsyms\]/ { sub("%", "", $1); print $1 }')
    SPLIT_LINE[$t]=$(awk -v r="$reqs" -v c="$cpu_ms" -v k="${kernel:-0}" -v s="$cs" -v t="$t" 'BEGIN {
        us = c * 1000 / r
        printf "  %-14s %9.2f %9.2f %9.2f %7.1f%% %9.2f\n", t, us, us * (100 - k) / 100, us * k / 100, k, s * 1000 / r }')
}
if [ "${SPLIT:-0}" = 1 ]; then
    for t in "${ORDER[@]}"; do
        log "split: $t under perf"
        split_run "$t"
    done
fi

for t in "${ORDER[@]}"; do RSS_LOAD[$t]=$(rss_mb "${PID_OF[$t]}"); done
if [ "$QUIET" -gt 0 ]; then
    log "$QUIET s of quiet"
    sleep "$QUIET"
fi
for t in "${ORDER[@]}"; do
    RSS_QUIET[$t]=$(rss_mb "${PID_OF[$t]}")
    ANON_QUIET[$t]=$(anon_mb "${PID_OF[$t]}")
done

per_round() { # metric target
    local r
    for r in $(seq 1 "$ROUNDS"); do "$1" "$2-r$r" ${3:+"$3"}; done
}
ratio_rounds() { # a b: a's req/s over b's, round by round
    local r
    # div prints no newline: one ratio per line, so the rounds read apart.
    for r in $(seq 1 "$ROUNDS"); do echo "$(div "$(rps "$1-r$r")" "$(rps "$2-r$r")")"; done
}
growth() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%+.0f", 100 * (b - a) / a; else print "?" }'; }
has() { case " $TARGETS_LIST " in *" $1 "*) return 0 ;; esac; return 1; }
ratio() { # label a b target
    has "$2" && has "$3" || return 0
    # shellcheck disable=SC2046
    local vals
    vals=$(ratio_rounds "$2" "$3" | tr '\n' ' ')
    # shellcheck disable=SC2086
    printf '  %-34s %6sx  (rounds: %s)%s\n' "$1" "$(median $vals)" "${vals% }" "${4:+  target $4}"
}

{
    echo "GET /auth/me beside its peers (bench/peers.sh)"
    echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (+ uncommitted changes under crates/)')"
    echo "host:    $(nproc) cores; load before $LOAD_START, after $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "plan:    servers on CPU $SERVER_CPUS (Rust servers: $WORKERS runtime thread(s)), wrk -t1 -c$CONNS on CPU $WRK_CPUS, $ROUNDS x ${DURATION}s, order rotated per round"
    echo
    printf '  %-14s %10s %-19s %9s %9s %9s %9s\n' target req/s "(rounds)" "p50 ms" "p99 ms" "RSS idle" "RSS load"
    for t in "${ORDER[@]}"; do
        # shellcheck disable=SC2046
        printf '  %-14s %10s %-19s %9s %9s %8sM %8sM\n' "$t" "$(median $(per_round rps "$t"))" \
            "($(spread $(per_round rps "$t")))" "$(median $(per_round pct "$t" 50))" \
            "$(median $(per_round pct "$t" 99))" "${RSS_IDLE[$t]}" "${RSS_LOAD[$t]}"
    done
    echo
    echo "resident memory (MB), idle and ${QUIET}s after the load (growth over idle):"
    printf '  %-14s %9s %9s %7s %10s %10s %7s\n' target "RSS idle" "RSS quiet" growth "anon idle" "anon quiet" growth
    for t in "${ORDER[@]}"; do
        printf '  %-14s %9s %9s %6s%% %10s %10s %6s%%\n' "$t" "${RSS_IDLE[$t]}" "${RSS_QUIET[$t]}" \
            "$(growth "${RSS_IDLE[$t]}" "${RSS_QUIET[$t]}")" "${ANON_IDLE[$t]}" "${ANON_QUIET[$t]}" \
            "$(growth "${ANON_IDLE[$t]}" "${ANON_QUIET[$t]}")"
    done
    echo
    echo "ratios (median of per-round ratios):"
    ratio "peer / bare" peer bare
    ratio "me / bare" me bare
    ratio "me / peer (cookie)" me peer ">= 1.0"
    ratio "bearer / peerbearer" bearer peerbearer ">= 1.0"
    ratio "peerfull / peer" peerfull peer
    ratio "peerfullbearer / peerbearer" peerfullbearer peerbearer
    ratio "me / peerfull" me peerfull
    ratio "bearer / peerfullbearer" bearer peerfullbearer
    ratio "me / django" me django ">= 60"
    # The floor for the Django target, in the same rounds: what the stack gets over Django with
    # the same session work (peer) and with nothing to do at all (bare).
    ratio "peer / django (floor, same work)" peer django
    ratio "bare / django (floor, no work)" bare django
    if [ "${SPLIT:-0}" = 1 ]; then
        echo
        echo "CPU per request (one more ${DURATION}s run each under perf stat / perf record -e cpu-clock):"
        printf '  %-14s %9s %9s %9s %8s %9s\n' target "CPU us" "user us" "kernel us" kernel "cs/1k req"
        for t in "${ORDER[@]}"; do printf '%s\n' "${SPLIT_LINE[$t]}"; done
        echo "(user = the server's own code and its libraries; kernel = loopback TCP, epoll, wake-ups)"
    fi
    echo
    echo "what each does per request: peer and peerbearer look the raw id or token up in memory"
    echo "(no hashing, no durability, no expiry sliding); me and bearer hash the token (SHA-256),"
    echo "read the session through the read cache over SQLite and derive the CSRF token."
    if has peerfull || has peerfullbearer; then
        echo "peerfull and peerfullbearer do Vestibule's per-request work on the same stack (hash the"
        echo "token, derive and mask the CSRF token, request id, security headers) from a memory map."
    fi
} | tee "$OUT.new"
mv "$OUT.new" "$OUT"
log "written $OUT"
