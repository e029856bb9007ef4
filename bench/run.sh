#!/usr/bin/env bash
# Vestibule benchmark: GET /auth/me throughput against a bare axum handler, and /auth/me tail
# latency while logins (Argon2) run in parallel. Loopback only; every loop is bounded.
#
#   bash bench/run.sh
#
# Knobs (environment): DURATION (s per wrk run, default 10), WARMUP (s, default 3),
# CONNS (default 64), THREADS (wrk threads, default 2), ALSO_T1 (1 = also run with -t1,
# default 1), LOGIN_RATE_MS (ms between logins, default 250 = 4/s), VEST_PORT, BASE_PORT,
# SKIP_BUILD (1 = use existing binaries).
# Output: a summary on stdout, also written to bench/results/latest.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
ALSO_T1="${ALSO_T1:-1}"
LOGIN_RATE_MS="${LOGIN_RATE_MS:-250}"
VEST_PORT="${VEST_PORT:-18431}"
BASE_PORT="${BASE_PORT:-18432}"
SKIP_BUILD="${SKIP_BUILD:-0}"
HOST=127.0.0.1 # loopback only, never anything else

VEST_BIN="$ROOT/target/release/vestibule"
BASE_MANIFEST="$ROOT/bench/baseline/Cargo.toml"
BASE_BIN="$ROOT/bench/baseline/target/release/bench-baseline"
RESULTS_DIR="$ROOT/bench/results"
OUT="$RESULTS_DIR/latest.txt"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- cleanup: every process this script starts is recorded by PID and killed on exit ---------
PIDS=()
TMP="$(mktemp -d -t vestibule-bench.XXXXXX)"
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        # Bounded wait, then force.
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ------------------------------------------------------------------------------------
apt_install() {
    local apt_opts=(-y -q -o DPkg::Lock::Timeout=300)
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "need root or sudo to install $*"
        sudo apt-get update -qq -o DPkg::Lock::Timeout=300
        sudo DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$@"
    else
        apt-get update -qq -o DPkg::Lock::Timeout=300
        DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$@"
    fi
}
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    apt_install "${missing[@]}" >&2
fi

# --- build ------------------------------------------------------------------------------------
if [ "$SKIP_BUILD" != 1 ]; then
    log "building vestibule (release)"
    cargo build --release -p vestibule-cli >&2
    log "building the bare axum baseline (release)"
    cargo build --release --manifest-path "$BASE_MANIFEST" >&2
fi
[ -x "$VEST_BIN" ] || die "missing $VEST_BIN"
[ -x "$BASE_BIN" ] || die "missing $BASE_BIN"

# --- servers ----------------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
port_in_use "$VEST_PORT" && die "port $VEST_PORT already in use (set VEST_PORT)"
port_in_use "$BASE_PORT" && die "port $BASE_PORT already in use (set BASE_PORT)"

wait_http() { # url, pid, logfile: wait (at most 15 s) until the URL answers at all
    local url="$1" pid="$2"
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || die "server for $url exited early: $(tail -c 600 "$3")"
        if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
        sleep 0.1
    done
    die "$url did not answer within 15 s"
}

DB="$TMP/bench.db"
VEST_URL="http://$HOST:$VEST_PORT"
BASE_URL="http://$HOST:$BASE_PORT"
PASSWORD='bench-password-1'
LOGIN_BODY="{\"username\":\"bench\",\"password\":\"$PASSWORD\"}"

# vestibule runs from the temp dir, so no stray ./vestibule.toml changes what is measured.
log "creating user 'bench' in $DB"
(cd "$TMP" && printf '%s\n' "$PASSWORD" | "$VEST_BIN" --database "$DB" user add bench --password-stdin) >&2

# Quiet logs (warn) when the binary accepts VESTIBULE_LOG; otherwise its default (info, under
# which no per-request line is written: only one line per login).
LOG_ENV=(VESTIBULE_LOG=warn)
LOG_NOTE="VESTIBULE_LOG=warn"
if ! (cd "$TMP" && env "${LOG_ENV[@]}" "$VEST_BIN" --database "$DB" config check) >"$TMP/check.log" 2>&1; then
    log "WARNING: the binary refuses VESTIBULE_LOG=warn: $(head -c 300 "$TMP/check.log")"
    log "WARNING: running with the default log level (info) instead"
    LOG_ENV=()
    LOG_NOTE="default log level (info): VESTIBULE_LOG=warn was refused by the config loader"
fi

log "starting vestibule on $VEST_URL"
(cd "$TMP" && exec env "${LOG_ENV[@]+"${LOG_ENV[@]}"}" "$VEST_BIN" --database "$DB" serve \
    --listen "$HOST:$VEST_PORT") >"$TMP/vestibule.log" 2>&1 &
VEST_PID=$!
PIDS+=("$VEST_PID")
wait_http "$VEST_URL/healthz" "$VEST_PID" "$TMP/vestibule.log"

log "starting baseline on $BASE_URL"
"$BASE_BIN" "$HOST:$BASE_PORT" >"$TMP/baseline.log" 2>&1 &
BASE_PID=$!
PIDS+=("$BASE_PID")
wait_http "$BASE_URL/auth/me" "$BASE_PID" "$TMP/baseline.log"

log "logging in"
code=$(curl -s -o "$TMP/login.json" -w '%{http_code}' --max-time 10 -c "$TMP/jar" \
    -H 'content-type: application/json' -d "$LOGIN_BODY" "$VEST_URL/auth/login")
[ "$code" = 200 ] || die "login returned HTTP $code: $(cat "$TMP/login.json")"
# Netscape cookie jar: name in field 6, value in field 7 (HttpOnly lines start "#HttpOnly_").
SESSION=$(awk -F'\t' '$6 == "vestibule_session" { print $7 }' "$TMP/jar" | tail -n1)
[ -n "$SESSION" ] || die "no vestibule_session cookie in the login response"
COOKIE="Cookie: vestibule_session=$SESSION"

code=$(curl -s -o "$TMP/me.json" -w '%{http_code}' --max-time 5 -H "$COOKIE" "$VEST_URL/auth/me")
[ "$code" = 200 ] || die "/auth/me with the cookie returned HTTP $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$VEST_URL/auth/me")
[ "$code" = 401 ] || die "/auth/me without the cookie returned HTTP $code (expected 401)"
VEST_BODY_LEN=$(wc -c <"$TMP/me.json")
BASE_BODY_LEN=$(curl -s --max-time 5 "$BASE_URL/auth/me" | wc -c)
log "vestibule /auth/me body: $VEST_BODY_LEN bytes; baseline body: $BASE_BODY_LEN bytes"

# --- wrk helpers ------------------------------------------------------------------------------
WRK_VERSION=$(wrk -v 2>&1 | head -n1 || true)
COMMANDS=()

run_wrk() { # name threads duration url [extra wrk args...]; output saved to $TMP/wrk-<name>.txt
    local name="$1" t="$2" d="$3" url="$4"
    shift 4
    local cmd=(wrk "-t$t" "-c$CONNS" "-d${d}s" --latency --timeout 5s "$@" "$url")
    log "wrk [$name]: ${cmd[*]//$SESSION/<session>}"
    COMMANDS+=("[$name] ${cmd[*]//$SESSION/<session>}")
    # wrk stops by itself after -d; `timeout` is a second bound.
    timeout $((d + 30)) "${cmd[@]}" >"$TMP/wrk-$name.txt" 2>&1 || die "wrk [$name] failed: $(cat "$TMP/wrk-$name.txt")"
}

to_ms() { # "1.23ms" | "845.00us" | "1.02s" | "2.00m" -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u);
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1;
        if (f < 0) { print "?"; exit }
        printf "%.3f", n * f }'
}

rps() { awk '/^Requests\/sec:/ { print $2 }' "$TMP/wrk-$1.txt"; }
pct() { # name percentile(50|75|90|99)
    local raw
    raw=$(awk -v p="$2%" '$1 == p && NF == 2 { print $2; exit }' "$TMP/wrk-$1.txt")
    [ -n "$raw" ] && to_ms "$raw" || echo "?"
}
total_reqs() { awk '/requests in/ { print $1; exit }' "$TMP/wrk-$1.txt"; }
non2xx() { awk '/Non-2xx or 3xx responses:/ { print $NF; f = 1 } END { if (!f) print 0 }' "$TMP/wrk-$1.txt"; }
sock_err() {
    awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); print; f = 1 } END { if (!f) print "none" }' \
        "$TMP/wrk-$1.txt"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "?" }'; }

# --- throughput: bare axum vs vestibule, same tool, same settings, same run -------------------
log "warm-up (${WARMUP}s each)"
run_wrk warm-base 2 "$WARMUP" "$BASE_URL/auth/me"
run_wrk warm-vest 2 "$WARMUP" "$VEST_URL/auth/me" -H "$COOKIE"

THREAD_SETS=("$THREADS")
if [ "$ALSO_T1" = 1 ] && [ "$THREADS" != 1 ]; then THREAD_SETS+=(1); fi
for t in "${THREAD_SETS[@]}"; do
    run_wrk "base-t$t" "$t" "$DURATION" "$BASE_URL/auth/me"
    run_wrk "vest-t$t" "$t" "$DURATION" "$VEST_URL/auth/me" -H "$COOKIE"
done

# --- latency under login load -----------------------------------------------------------------
# A background loop starts one login every LOGIN_RATE_MS ms (4/s by default), each curl in the
# background so a slow login does not lower the rate. Bounded: at most MAX_LOGINS iterations and
# LOGIN_WINDOW seconds; each curl has --max-time 10.
LOGIN_WINDOW=$((DURATION + 5))
MAX_LOGINS=$((LOGIN_WINDOW * 1000 / LOGIN_RATE_MS))
LOGIN_DELAY=$(awk -v ms="$LOGIN_RATE_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
: >"$TMP/logins.txt"
login_loop() {
    local deadline=$((SECONDS + LOGIN_WINDOW)) i=0
    # Killed early (cleanup): take the in-flight curls down too.
    trap 'kill $(jobs -p) 2>/dev/null; exit 143' TERM
    while [ "$i" -lt "$MAX_LOGINS" ] && [ "$SECONDS" -lt "$deadline" ]; do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 10 \
            -H 'content-type: application/json' -d "$LOGIN_BODY" "$VEST_URL/auth/login" \
            >>"$TMP/logins.txt" 2>/dev/null &
        i=$((i + 1))
        sleep "$LOGIN_DELAY"
    done
    wait
}
log "login load: 1 login every ${LOGIN_RATE_MS} ms (max $MAX_LOGINS, ${LOGIN_WINDOW}s) while wrk runs"
login_loop &
LOGIN_PID=$!
PIDS+=("$LOGIN_PID")
COMMANDS+=("[login-load] every ${LOGIN_DELAY}s for ${LOGIN_WINDOW}s (max $MAX_LOGINS): curl -s --max-time 10 -H 'content-type: application/json' -d '$LOGIN_BODY' $VEST_URL/auth/login")
sleep 1 # let the login load reach steady state before measuring
run_wrk "vest-login-t$THREADS" "$THREADS" "$DURATION" "$VEST_URL/auth/me" -H "$COOKIE"
log "waiting for the login loop to finish (bounded)"
wait "$LOGIN_PID" || true

LOGINS_TOTAL=$(wc -l <"$TMP/logins.txt")
LOGINS_OK=$(awk '$1 == "200"' "$TMP/logins.txt" | wc -l)
LOGIN_LAT=$(awk '$1 == "200" { s += $2; n++; if ($2 > m) m = $2 }
    END { if (n) printf "mean %.0f ms, max %.0f ms", 1000 * s / n, 1000 * m; else print "n/a" }' \
    "$TMP/logins.txt")
LOGIN_CODES=$(awk '{ c[$1]++ } END { for (k in c) printf "%s%s x%d", sep, k, c[k]; sep = ", " }' \
    "$TMP/logins.txt")

# --- summary ----------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN {
    if (v == "?") { print "n/a"; exit }
    if ((op == ">=" && v + 0 >= lim) || (op == "<" && v + 0 < lim)) print "PASS"; else print "FAIL" }'; }

{
    echo "Vestibule benchmark — GET /auth/me"
    echo "date:        $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "git:         $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (+ uncommitted changes under crates/)')"
    echo "host:        $(uname -sr), nproc $(nproc), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo '?')"
    echo "rustc:       $(rustc --version 2>/dev/null || echo '?')"
    echo "load tool:   $WRK_VERSION"
    echo "store:       default (vestibule serve --database <tmp>/bench.db)"
    echo "logging:     $LOG_NOTE"
    echo "bodies:      vestibule $VEST_BODY_LEN bytes, baseline $BASE_BODY_LEN bytes"
    echo "note:        wrk, both servers and the login loop share the same $(nproc) cores"
    echo
    printf '%-22s %12s %10s %10s %10s %10s %10s %8s\n' \
        run req/s p50_ms p75_ms p90_ms p99_ms requests non2xx
    for name in "${THREAD_SETS[@]/#/base-t}" "${THREAD_SETS[@]/#/vest-t}" "vest-login-t$THREADS"; do
        printf '%-22s %12s %10s %10s %10s %10s %10s %8s\n' "$name" "$(rps "$name")" \
            "$(pct "$name" 50)" "$(pct "$name" 75)" "$(pct "$name" 90)" "$(pct "$name" 99)" \
            "$(total_reqs "$name")" "$(non2xx "$name")"
    done
    echo
    for t in "${THREAD_SETS[@]}"; do
        r=$(ratio "$(rps "vest-t$t")" "$(rps "base-t$t")")
        echo "ratio -t$t:   vestibule / bare axum = $r %   (target >= 70 %: $(verdict "$r" 70 '>='))"
    done
    p99=$(pct "vest-login-t$THREADS" 99)
    echo "login load:  p99 /auth/me at $CONNS connections = $p99 ms   (target < 5 ms: $(verdict "$p99" 5 '<'))"
    echo "logins:      $LOGINS_OK of $LOGINS_TOTAL succeeded (HTTP 200); codes: ${LOGIN_CODES:-none}; $LOGIN_LAT"
    echo
    echo "socket errors:"
    for name in "${THREAD_SETS[@]/#/base-t}" "${THREAD_SETS[@]/#/vest-t}" "vest-login-t$THREADS"; do
        echo "  $name: $(sock_err "$name")"
    done
    echo
    echo "commands (session value elided):"
    echo "  printf '<password>\\n' | target/release/vestibule --database <tmp>/bench.db user add bench --password-stdin"
    echo "  ${LOG_ENV[*]+"${LOG_ENV[*]} "}target/release/vestibule --database <tmp>/bench.db serve --listen $HOST:$VEST_PORT"
    echo "  bench/baseline/target/release/bench-baseline $HOST:$BASE_PORT"
    for c in "${COMMANDS[@]}"; do echo "  $c"; done
    warns=$(grep -E 'WARN|ERROR|panick' "$TMP/vestibule.log" | tail -n 20 || true)
    echo
    echo "vestibule log, WARN/ERROR lines (last 20): ${warns:+$'\n'}${warns:-none}" | sed '2,$s/^/  /'
    echo "vestibule log, lines in all: $(wc -l <"$TMP/vestibule.log")"
} | tee "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
# Raw wrk outputs beside the summary, for anyone who wants the full latency distribution.
for f in "$TMP"/wrk-*.txt; do cp "$f" "$RESULTS_DIR/latest-$(basename "$f")"; done
log "written $OUT"
