#!/usr/bin/env bash
# Vestibule benchmark: GET /auth/me throughput against a bare axum handler, and /auth/me tail
# latency while logins (Argon2) run in parallel. Loopback only; every loop is bounded.
#
#   bash bench/run.sh
#
# Knobs (environment): DURATION (s per wrk run, default 10), ROUNDS (default 3), WARMUP (s, default 3),
# CONNS (default 64), THREADS (wrk threads, default 2), ALSO_T1 (1 = also run with -t1,
# default 1), LOGIN_RATE_MS (ms between logins, default 250 = 4/s), VEST_PORT, BASE_PORT,
# SKIP_BUILD (1 = use existing binaries).
# Output: a summary on stdout, also written to bench/results/latest.txt.
set -euo pipefail
export LC_ALL=C # decimal points in $EPOCHREALTIME and awk

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
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

BENCH_NAME=bench
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- tools ------------------------------------------------------------------------------------
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


DB="$TMP/bench.db"
VEST_URL="http://$HOST:$VEST_PORT"
BASE_URL="http://$HOST:$BASE_PORT"
PASSWORD='wrk-load-passphrase-1'
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

# The login load is one account from one address, on purpose (it measures Argon2 beside the
# read path): lift the login rate limits, which would otherwise answer 429 without hashing.
LOG_ENV+=(VESTIBULE_RATE_LIMITS__LOGIN_PER_IP=off VESTIBULE_RATE_LIMITS__LOGIN_PER_USER=off
    VESTIBULE_RATE_LIMITS__LOGIN_PER_DEVICE=off)
# Each round logs the same user in 44 more times; past limits.max_sessions_per_user (100) the
# least recently used session ends, which can be the one wrk measures with (its /auth/me reads
# do not count as use), and the rest of the run is cheap 401s. Lift the cap for the bench.
LOG_ENV+=(VESTIBULE_LIMITS__MAX_SESSIONS_PER_USER=100000)
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

# The same user over the bearer transport (issue 3: bearer /auth/me >= 90 % of the cookie's req/s).
BEARER_BODY=${LOGIN_BODY%\}},\"transport\":\"bearer\"}
code=$(curl -s -o "$TMP/bearer.json" -w '%{http_code}' --max-time 10 \
    -H 'content-type: application/json' -d "$BEARER_BODY" "$VEST_URL/auth/login")
[ "$code" = 200 ] || die "bearer login returned HTTP $code: $(cat "$TMP/bearer.json")"
BEARER_TOKEN=$(sed -n 's/.*"token":"\(vst_[A-Za-z0-9]*\)".*/\1/p' "$TMP/bearer.json")
[ -n "$BEARER_TOKEN" ] || die "no token in the bearer login response"
BEARER="Authorization: Bearer $BEARER_TOKEN"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "$BEARER" "$VEST_URL/auth/me")
[ "$code" = 200 ] || die "/auth/me with the bearer token returned HTTP $code"

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
    local cmd=(wrk "-t$t" "-c$CONNS" "-d${d}s" --latency --timeout 5s "$@" "$url") shown
    shown=$(printf '%q ' "${cmd[@]}")
    shown="${shown% }"
    shown="${shown//$SESSION/<session>}"
    log "wrk [$name]: $shown"
    COMMANDS+=("[${name%-r[0-9]*}] $shown")
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
lat_max() { # the Max column of wrk's "Latency avg stdev max" line, in ms
    local raw
    raw=$(awk '$1 == "Latency" && NF >= 4 { print $4; exit }' "$TMP/wrk-$1.txt")
    [ -n "$raw" ] && to_ms "$raw" || echo "?"
}
total_reqs() { awk '/requests in/ { print $1; exit }' "$TMP/wrk-$1.txt"; }
non2xx() { awk '/Non-2xx or 3xx responses:/ { print $NF; f = 1 } END { if (!f) print 0 }' "$TMP/wrk-$1.txt"; }
sock_err() {
    awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); print; f = 1 } END { if (!f) print "none" }' \
        "$TMP/wrk-$1.txt"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "?" }'; }

# --- measurement plan ---------------------------------------------------------------------------
# Each round: for each wrk thread count, bare axum and vestibule back to back (order alternating
# between rounds so drift does not favour one side), then vestibule while logins run.
# Figures are reported per round and as the median over rounds.
THREAD_SETS=("$THREADS")
if [ "$ALSO_T1" = 1 ] && [ "$THREADS" != 1 ]; then THREAD_SETS+=(1); fi

# Logins: a background loop starts one login every LOGIN_RATE_MS ms (4/s by default), each curl in
# the background so a slow login does not lower the rate. It starts 1 s before wrk and is bounded
# to LOGIN_WINDOW seconds and MAX_LOGINS iterations; each curl has --max-time 10.
LOGIN_WINDOW=$((DURATION + 1))
MAX_LOGINS=$((LOGIN_WINDOW * 1000 / LOGIN_RATE_MS))
LOGIN_DELAY=$(awk -v ms="$LOGIN_RATE_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
login_loop() { # output file
    # The count ends the loop on schedule; the deadline (integer seconds, 2 s slack) is a backstop.
    local out="$1" deadline=$((SECONDS + LOGIN_WINDOW + 2)) i=0 start pause
    start="$EPOCHREALTIME"
    # Killed early (cleanup): take the in-flight curls down too.
    trap 'kill $(jobs -p) 2>/dev/null; exit 143' TERM
    while [ "$i" -lt "$MAX_LOGINS" ] && [ "$SECONDS" -lt "$deadline" ]; do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 10 \
            -H 'content-type: application/json' -d "$LOGIN_BODY" "$VEST_URL/auth/login" \
            >>"$out" 2>/dev/null &
        i=$((i + 1))
        # On a fixed schedule (start + i * delay), so the time to fork curl does not lower the rate.
        pause=$(awk -v s="$start" -v now="$EPOCHREALTIME" -v i="$i" -v d="$LOGIN_DELAY" \
            'BEGIN { p = s + i * d - now; printf "%.3f", (p > 0 ? p : 0) }')
        sleep "$pause"
    done
    wait
}
LOGIN_CMD="[login-load] one every ${LOGIN_DELAY}s for ${LOGIN_WINDOW}s (max $MAX_LOGINS), from 1 s before wrk: curl -s --max-time 10 -H 'content-type: application/json' -d '$LOGIN_BODY' $VEST_URL/auth/login"

log "warm-up (${WARMUP}s each)"
run_wrk warm-base "$THREADS" "$WARMUP" "$BASE_URL/auth/me"
run_wrk warm-vest "$THREADS" "$WARMUP" "$VEST_URL/auth/me" -H "$COOKIE"

: >"$TMP/logins.txt"
ROWS=()
for r in $(seq 1 "$ROUNDS"); do
    log "round $r of $ROUNDS"
    for t in "${THREAD_SETS[@]}"; do
        if [ $((r % 2)) = 1 ]; then
            run_wrk "base-t$t-r$r" "$t" "$DURATION" "$BASE_URL/auth/me"
            run_wrk "vest-t$t-r$r" "$t" "$DURATION" "$VEST_URL/auth/me" -H "$COOKIE"
        else
            run_wrk "vest-t$t-r$r" "$t" "$DURATION" "$VEST_URL/auth/me" -H "$COOKIE"
            run_wrk "base-t$t-r$r" "$t" "$DURATION" "$BASE_URL/auth/me"
        fi
        ROWS+=("base-t$t-r$r" "vest-t$t-r$r")
    done
    run_wrk "bearer-t$THREADS-r$r" "$THREADS" "$DURATION" "$VEST_URL/auth/me" -H "$BEARER"
    ROWS+=("bearer-t$THREADS-r$r")
    log "login load: 1 login every ${LOGIN_RATE_MS} ms (max $MAX_LOGINS, ${LOGIN_WINDOW}s) while wrk runs"
    login_loop "$TMP/logins-r$r.txt" &
    LOGIN_PID=$!
    PIDS+=("$LOGIN_PID")
    sleep 1 # the login load is running before the measurement starts
    run_wrk "vest-login-t$THREADS-r$r" "$THREADS" "$DURATION" "$VEST_URL/auth/me" -H "$COOKIE"
    wait "$LOGIN_PID" || true # bounded: the loop ends by itself, its curls have --max-time
    cat "$TMP/logins-r$r.txt" >>"$TMP/logins.txt"
    ROWS+=("vest-login-t$THREADS-r$r")
done

logins_ok() { awk '$1 == "200"' "$1" | wc -l; }
LOGINS_TOTAL=$(wc -l <"$TMP/logins.txt")
LOGINS_OK=$(logins_ok "$TMP/logins.txt")
LOGIN_LAT=$(awk '$1 == "200" { s += $2; n++; if ($2 > m) m = $2 }
    END { if (n) printf "mean %.0f ms, max %.0f ms", 1000 * s / n, 1000 * m; else print "n/a" }' \
    "$TMP/logins.txt")
LOGIN_CODES=$(awk '{ c[$1]++ } END { for (k in c) { printf "%s%s x%d", sep, k, c[k]; sep = ", " } }' \
    "$TMP/logins.txt")

# --- summary ----------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN {
    if (v == "?" || v == "") { print "n/a"; exit }
    if ((op == ">=" && v + 0 >= lim) || (op == "<" && v + 0 < lim)) print "PASS"; else print "FAIL" }'; }
median() { # numbers as arguments ("?" ignored)
    printf '%s\n' "$@" | grep -v '^?$' | sort -g | awk '{ v[NR] = $1 }
        END { if (!NR) { print "?"; exit }
              m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m }'
}
rounds_of() { # metric-function kind -> the value for each round
    local fn="$1" kind="$2" r
    for r in $(seq 1 "$ROUNDS"); do printf '%s\n' "$("$fn" "$kind-r$r")"; done
}
p50() { pct "$1" 50; }
p99() { pct "$1" 99; }
FMT='%-18s %11s %8s %8s %8s %8s %8s %9s %7s\n'

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
    echo "plan:        $ROUNDS round(s) x wrk -t{${THREAD_SETS[*]}} -c$CONNS -d${DURATION}s, after a ${WARMUP}s warm-up of each server"
    echo "note:        wrk, both servers and the login loop share the same $(nproc) cores"
    echo "load avg:    $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1/5/15 min; above ~$(nproc) other processes were competing for the CPUs, and absolute figures and ratios are noisy)"
    echo
    # shellcheck disable=SC2059
    printf "$FMT" run req/s p50_ms p75_ms p90_ms p99_ms max_ms requests non2xx
    for name in "${ROWS[@]}"; do
        # shellcheck disable=SC2059
        printf "$FMT" "$name" "$(rps "$name")" \
            "$(pct "$name" 50)" "$(pct "$name" 75)" "$(pct "$name" 90)" "$(pct "$name" 99)" \
            "$(lat_max "$name")" "$(total_reqs "$name")" "$(non2xx "$name")"
    done
    echo "(base = bare axum, vest = vestibule with the session cookie, -tN = wrk threads, -rN = round,"
    echo " vest-login = vestibule while logins run; latencies in ms as wrk reports them)"
    echo
    echo "medians over $ROUNDS round(s):"
    printf '  %-16s %11s %8s %8s\n' run req/s p50_ms p99_ms
    for kind in "${THREAD_SETS[@]/#/base-t}" "${THREAD_SETS[@]/#/vest-t}" "bearer-t$THREADS" "vest-login-t$THREADS"; do
        # shellcheck disable=SC2046
        printf '  %-16s %11s %8s %8s\n' "$kind" "$(median $(rounds_of rps "$kind"))" \
            "$(median $(rounds_of p50 "$kind"))" "$(median $(rounds_of p99 "$kind"))"
    done
    echo
    for t in "${THREAD_SETS[@]}"; do
        per_round=()
        for r in $(seq 1 "$ROUNDS"); do
            per_round+=("$(ratio "$(rps "vest-t$t-r$r")" "$(rps "base-t$t-r$r")")")
        done
        # shellcheck disable=SC2046
        rm=$(ratio "$(median $(rounds_of rps "vest-t$t"))" "$(median $(rounds_of rps "base-t$t"))")
        # Headline: the median of the paired per-round ratios. Each pair runs back to back, so it
        # shares the machine's momentary state; medians taken across rounds mix different states.
        # shellcheck disable=SC2046
        m=$(median "${per_round[@]}")
        echo "ratio -t$t:    vestibule / bare axum = $m % (median of paired per-round ratios: ${per_round[*]}; ratio of medians $rm %)   target >= 70 %: $(verdict "$m" 70 '>=')"
    done
    # shellcheck disable=SC2046
    bearer_rounds=()
    for r in $(seq 1 "$ROUNDS"); do
        bearer_rounds+=("$(ratio "$(rps "bearer-t$THREADS-r$r")" "$(rps "vest-t$THREADS-r$r")")")
    done
    bm=$(median "${bearer_rounds[@]}")
    echo "bearer:       bearer / cookie /auth/me = $bm % (-t$THREADS, median of per-round ratios: ${bearer_rounds[*]})   target >= 90 %: $(verdict "$bm" 90 '>=')"
    # shellcheck disable=SC2046
    p99m=$(median $(rounds_of p99 "vest-login-t$THREADS"))
    echo "login load:   p99 /auth/me at -c$CONNS while logging in = $p99m ms (median; per round: $(rounds_of p99 "vest-login-t$THREADS" | tr '\n' ' '| sed 's/ $//'))   target < 5 ms: $(verdict "$p99m" 5 '<')"
    # shellcheck disable=SC2046
    echo "              same without logins (vest-t$THREADS): p99 $(median $(rounds_of p99 "vest-t$THREADS")) ms, max $(median $(rounds_of lat_max "vest-t$THREADS")) ms; with logins max $(median $(rounds_of lat_max "vest-login-t$THREADS")) ms (medians)"
    per_round_logins=()
    for r in $(seq 1 "$ROUNDS"); do
        per_round_logins+=("$(logins_ok "$TMP/logins-r$r.txt")/$(wc -l <"$TMP/logins-r$r.txt")")
    done
    echo "logins:       $LOGINS_OK of $LOGINS_TOTAL succeeded (HTTP 200; per round ${per_round_logins[*]}); codes: ${LOGIN_CODES:-none}; $LOGIN_LAT"
    echo
    errs=()
    for name in "${ROWS[@]}"; do
        e=$(sock_err "$name")
        [ "$e" = none ] || errs+=("$name: socket errors $e")
        n=$(non2xx "$name")
        [ "$n" = 0 ] || errs+=("$name: $n non-2xx responses (run invalid for vest rows)")
    done
    if [ "${#errs[@]}" -eq 0 ]; then
        echo "errors:       none (no socket errors, no non-2xx responses)"
    else
        echo "errors:"
        printf '  %s\n' "${errs[@]}"
    fi
    echo
    echo "commands (session value elided):"
    printf '%s\n' "  printf '<password>\\n' | target/release/vestibule --database <tmp>/bench.db user add bench --password-stdin"
    echo "  ${LOG_ENV[*]+"${LOG_ENV[*]} "}target/release/vestibule --database <tmp>/bench.db serve --listen $HOST:$VEST_PORT"
    echo "  bench/baseline/target/release/bench-baseline $HOST:$BASE_PORT"
    printf '%s\n' "${COMMANDS[@]}" | awk '!seen[$0]++' | sed 's/^/  /'
    echo "  $LOGIN_CMD"
    warns=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/vestibule.log" | grep -E 'WARN|ERROR|panick' | tail -n 20 || true)
    echo
    echo "vestibule log, WARN/ERROR lines (last 20): ${warns:+$'\n'}${warns:-none}" | sed '2,$s/^/  /'
    echo "vestibule log, lines in all: $(wc -l <"$TMP/vestibule.log")"
} | tee "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
# Raw wrk outputs, for anyone who wants the full latency distribution.
for name in warm-base warm-vest "${ROWS[@]}"; do
    printf '===== %s\n' "$name"
    cat "$TMP/wrk-$name.txt"
done >"$RESULTS_DIR/latest-raw.txt"
log "written $OUT and $RESULTS_DIR/latest-raw.txt"
