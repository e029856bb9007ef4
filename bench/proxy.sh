#!/usr/bin/env bash
# Vestibule proxy benchmark (issue 8): a 1 KB JSON upstream measured directly, through
# `vestibule serve` with an [[upstream]], through nginx proxy_pass and through Vite's dev-server
# proxy; plus the RSS cost of streaming 100 MB through Vestibule. Loopback only; every loop is
# bounded in count and time.
#
#   bash bench/proxy.sh
#
# Knobs (environment): DURATION (s per wrk run, default 10), ROUNDS (3), WARMUP (s, 3),
# CONNS (32), WORKERS (worker threads/processes of every proxy, default 1), WRK_CPUS (CPU list
# for wrk, default 1), SERVER_CPUS (CPU list for the upstream and the proxy under test,
# default 0), STREAM_MB (100), PACE_MS (delay between a connection's requests in the
# latency runs, default 5), VEST_BIN (the vestibule binary to measure), SKIP_BUILD (1 = use existing binaries and node_modules),
# SKIP_VITE (1 = leave Vite out), UP_PORT/VEST_PORT/NGINX_PORT/VITE_PORT/BARE_PORT/CADDY_PORT/
# BAREFULL_PORT (18442-18448).
# Also measured: `bare`, the smallest axum + hyper-util proxy (bench/baseline `proxy` mode), the
# floor of the stack Vestibule's gateway is built on; `barefull`, the same proxy doing the header
# work a correct reverse proxy must do (bench/baseline `proxyfull` mode: hop-by-hop headers,
# `Forwarded` and `X-Forwarded-*`, a response timeout, the request id, security headers); and `vestauth`, the path users actually run:
# a `require_auth` upstream with a session cookie (identity headers and the signed assertion).
# Output: a summary on stdout, also written to bench/results/proxy.txt (raw wrk outputs in
# bench/results/proxy-raw.txt).
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-3}"
CONNS="${CONNS:-32}"
WORKERS="${WORKERS:-1}"
WRK_CPUS="${WRK_CPUS:-1}"
SERVER_CPUS="${SERVER_CPUS:-0}"
STREAM_MB="${STREAM_MB:-100}"
PACE_MS="${PACE_MS:-5}"
SKIP_BUILD="${SKIP_BUILD:-0}"
SKIP_VITE="${SKIP_VITE:-0}"
UP_PORT="${UP_PORT:-18442}"
VEST_PORT="${VEST_PORT:-18443}"
NGINX_PORT="${NGINX_PORT:-18444}"
VITE_PORT="${VITE_PORT:-18445}"
BARE_PORT="${BARE_PORT:-18446}"
CADDY_PORT="${CADDY_PORT:-18447}"
BAREFULL_PORT="${BAREFULL_PORT:-18448}"
HOST=127.0.0.1 # loopback only, never anything else

VEST_BIN="${VEST_BIN:-$ROOT/target/release/vestibule}" # override to compare two builds
BASE_MANIFEST="$ROOT/bench/baseline/Cargo.toml"
BASE_BIN="$ROOT/bench/baseline/target/release/bench-baseline"
VITE_DIR="$ROOT/bench/vite-proxy"
RESULTS_DIR="$ROOT/bench/results"
OUT="$RESULTS_DIR/proxy.txt"
PATH_JSON=/api/json
AUTH_PASSWORD="gateway path secret 7" # the authenticated target's user (a throwaway database)

BENCH_NAME=proxy-bench
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# One port per server, each free before the run: on a shared or taken port, wait_200 would be
# answered by another server and that server measured under the wrong name.
PORTS=("$UP_PORT" "$VEST_PORT" "$NGINX_PORT" "$VITE_PORT" "$BARE_PORT" "$CADDY_PORT" "$BAREFULL_PORT")
[ "$(printf '%s\n' "${PORTS[@]}" | sort -u | wc -l)" -eq "${#PORTS[@]}" ] ||
    die "two servers were given one port: ${PORTS[*]}"
for p in "${PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then die "port $p on $HOST is taken already"; fi
done

# --- tools ------------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
command -v caddy >/dev/null || missing+=(caddy)
if [ "$SKIP_VITE" != 1 ]; then command -v npm >/dev/null || missing+=(nodejs npm); fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    apt_install "${missing[@]}" >&2
fi
NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"

# --- build ------------------------------------------------------------------------------------
if [ "$SKIP_BUILD" != 1 ]; then
    log "building vestibule (release)"
    cargo build --release -p vestibule-cli >&2
    log "building the upstream (bench/baseline, release)"
    cargo build --release --manifest-path "$BASE_MANIFEST" >&2
    if [ "$SKIP_VITE" != 1 ]; then
        log "installing Vite (npm ci in bench/vite-proxy)"
        (cd "$VITE_DIR" && npm ci --no-audit --no-fund) >&2
    fi
fi
[ -x "$VEST_BIN" ] || die "missing $VEST_BIN"
[ -x "$BASE_BIN" ] || die "missing $BASE_BIN"
[ "$SKIP_VITE" = 1 ] || [ -f "$VITE_DIR/node_modules/vite/bin/vite.js" ] || die "no Vite: run npm ci in bench/vite-proxy"

# --- CPU placement ----------------------------------------------------------------------------
# wrk gets its own CPU(s); the upstream and the proxy under test share the other(s). So every
# proxy is charged for its own CPU use, as it would be on a machine where it runs beside its
# backend, and the load generator never competes with what it measures.
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    PIN_WRK=(taskset -c "$WRK_CPUS")
    PIN_SRV=(taskset -c "$SERVER_CPUS")
    PIN_NOTE="wrk on CPU $WRK_CPUS; upstream and proxy on CPU $SERVER_CPUS (taskset)"
else
    PIN_WRK=()
    PIN_SRV=()
    PIN_NOTE="not pinned (1 CPU)"
fi

# --- servers ----------------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
for p in "$UP_PORT" "$VEST_PORT" "$NGINX_PORT" "$VITE_PORT"; do
    port_in_use "$p" && die "port $p already in use (set UP_PORT/VEST_PORT/NGINX_PORT/VITE_PORT)"
done

wait_200() { wait_http "$1" "$2" "$3" 20 200; }

UP_URL="http://$HOST:$UP_PORT"
log "starting the upstream on $UP_URL"
"${PIN_SRV[@]+"${PIN_SRV[@]}"}" env TOKIO_WORKER_THREADS="$WORKERS" "$BASE_BIN" "$HOST:$UP_PORT" upstream \
    >"$TMP/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_200 "$UP_URL$PATH_JSON" "$UP_PID" "$TMP/upstream.log"

# Vestibule: a fresh SQLite database, an anonymous_ok upstream for /api, run from the temp dir
# so no stray vestibule.toml is read. TOKIO_WORKER_THREADS sets its runtime's worker count.
VEST_URL="http://$HOST:$VEST_PORT"
cat >"$TMP/vestibule.toml" <<EOF
[[upstream]]
prefix = "/api"
url = "$UP_URL"
policy = "anonymous_ok"

# The path users actually run (vestauth): a session required, identity headers and the signed
# identity assertion sent upstream. /private/api/json reaches the same upstream route.
[[upstream]]
prefix = "/private"
url = "$UP_URL"
policy = "require_auth"
strip_prefix = true
identity_assertion = true
EOF
(cd "$TMP" && printf '%s\n' "$AUTH_PASSWORD" | "$VEST_BIN" --database "$TMP/bench.db" user add bench \
    --password-stdin) >"$TMP/user-add.log" 2>&1 || die "user add failed: $(cat "$TMP/user-add.log")"
log "starting vestibule on $VEST_URL ($WORKERS worker thread(s))"
(cd "$TMP" && exec "${PIN_SRV[@]+"${PIN_SRV[@]}"}" env TOKIO_WORKER_THREADS="$WORKERS" VESTIBULE_LOG=warn \
    "$VEST_BIN" --config "$TMP/vestibule.toml" --database "$TMP/bench.db" serve \
    --listen "$HOST:$VEST_PORT") >"$TMP/vestibule.log" 2>&1 &
VEST_PID=$!
PIDS+=("$VEST_PID")
wait_200 "$VEST_URL$PATH_JSON" "$VEST_PID" "$TMP/vestibule.log"
AUTH_COOKIE=$(curl -s -D - -o /dev/null --max-time 10 -H 'content-type: application/json' \
    -d "{\"username\":\"bench\",\"password\":\"$AUTH_PASSWORD\"}" "$VEST_URL/auth/login" | tr -d '\r' |
    sed -n 's/^[Ss]et-[Cc]ookie: \(vestibule_session=[^;]*\).*/\1/p' | head -1)
[ -n "$AUTH_COOKIE" ] || die "login gave no session cookie: $(tail -c 600 "$TMP/vestibule.log")"

# nginx: a test-owned master (daemon off) with its own config, pid file, logs and temp dirs;
# the same worker count; HTTP/1.1 keep-alive to the upstream, and the same X-Forwarded-* /
# Forwarded headers Vestibule sets, so both do the same work per request.
NGINX_URL="http://$HOST:$NGINX_PORT"
nginx_proxy_conf "$TMP/nginx" "$HOST:$NGINX_PORT" "$HOST:$UP_PORT" "worker_processes $WORKERS;"
log "starting nginx on $NGINX_URL ($WORKERS worker process(es))"
"${PIN_SRV[@]+"${PIN_SRV[@]}"}" "$NGINX_BIN" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_200 "$NGINX_URL$PATH_JSON" "$NGINX_PID" "$TMP/nginx.log"

# A bench/baseline proxy mode (NAME PORT MODE), same workers, started and waited for.
start_baseline_proxy() {
    "${PIN_SRV[@]+"${PIN_SRV[@]}"}" env TOKIO_WORKER_THREADS="$WORKERS" "$BASE_BIN" "$HOST:$2" \
        "$3" "$UP_URL" >"$TMP/$1.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_200 "http://$HOST:$2$PATH_JSON" "$pid" "$TMP/$1.log"
}
# The floor: the smallest axum + hyper-util proxy (bench/baseline `proxy` mode).
BARE_URL="http://$HOST:$BARE_PORT"
log "starting the bare axum proxy on $BARE_URL"
start_baseline_proxy bare "$BARE_PORT" proxy
# The like-for-like floor: the same proxy doing the forwarding header work (`proxyfull` mode).
BAREFULL_URL="http://$HOST:$BAREFULL_PORT"
log "starting the bare proxy doing the forwarding header work on $BAREFULL_URL"
start_baseline_proxy barefull "$BAREFULL_PORT" proxyfull

# Caddy (Debian's package): reverse_proxy with its defaults (HTTP/1.1 keep-alive upstream,
# X-Forwarded-* set), no admin endpoint, no automatic HTTPS; GOMAXPROCS as the worker count.
CADDY_URL="http://$HOST:$CADDY_PORT"
mkdir -p "$TMP/caddy"
cat >"$TMP/caddy/Caddyfile" <<CADDY
{
    admin off
    auto_https off
    storage file_system $TMP/caddy/data
}
http://$HOST:$CADDY_PORT {
    bind $HOST
    reverse_proxy $HOST:$UP_PORT
}
CADDY
log "starting Caddy on $CADDY_URL"
(cd "$TMP/caddy" && exec "${PIN_SRV[@]+"${PIN_SRV[@]}"}" env GOMAXPROCS="$WORKERS" \
    HOME="$TMP/caddy" XDG_DATA_HOME="$TMP/caddy" XDG_CONFIG_HOME="$TMP/caddy" \
    caddy run --config "$TMP/caddy/Caddyfile" --adapter caddyfile) >"$TMP/caddy.log" 2>&1 &
CADDY_PID=$!
PIDS+=("$CADDY_PID")
wait_200 "$CADDY_URL$PATH_JSON" "$CADDY_PID" "$TMP/caddy.log"

VITE_URL="http://$HOST:$VITE_PORT"
if [ "$SKIP_VITE" != 1 ]; then
    log "starting Vite's dev server (server.proxy) on $VITE_URL"
    (cd "$VITE_DIR" && exec "${PIN_SRV[@]+"${PIN_SRV[@]}"}" env -u NODE_OPTIONS BENCH_UPSTREAM="$UP_URL" \
        BENCH_VITE_PORT="$VITE_PORT" NODE_ENV=development node node_modules/vite/bin/vite.js \
        --config vite.config.js) >"$TMP/vite.log" 2>&1 &
    VITE_PID=$!
    PIDS+=("$VITE_PID")
    wait_200 "$VITE_URL$PATH_JSON" "$VITE_PID" "$TMP/vite.log"
fi

# Every target answers the same 1 KB body.
TARGETS=(direct vestibule vestauth nginx caddy bare barefull)
[ "$SKIP_VITE" = 1 ] || TARGETS+=(vite)
url_of() {
    case "$1" in
        direct) echo "$UP_URL$PATH_JSON" ;;
        vestibule) echo "$VEST_URL$PATH_JSON" ;;
        vestauth) echo "$VEST_URL/private$PATH_JSON" ;;
        nginx) echo "$NGINX_URL$PATH_JSON" ;;
        bare) echo "$BARE_URL$PATH_JSON" ;;
        barefull) echo "$BAREFULL_URL$PATH_JSON" ;;
        caddy) echo "$CADDY_URL$PATH_JSON" ;;
        vite) echo "$VITE_URL$PATH_JSON" ;;
    esac
}
# The request headers a target needs (the session cookie of the authenticated path).
args_of() {
    if [ "$1" = vestauth ]; then printf '%s\n' -H "Cookie: $AUTH_COOKIE"; fi
}
BODY_NOTE=()
for t in "${TARGETS[@]}"; do
    mapfile -t A < <(args_of "$t")
    len=$(curl -s --max-time 5 "${A[@]}" "$(url_of "$t")" | wc -c)
    [ "$len" = 1024 ] || die "$t answered a $len-byte body, expected 1024"
    BODY_NOTE+=("$t $len")
done

# --- streaming RSS (before any load, so the figure is the stream's own) ------------------------
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# Peak RSS during one transfer: reset the kernel's high-water mark (clear_refs 5), run the
# transfer, read VmHWM. A 20 ms sampler of VmRSS is the fallback where clear_refs is refused.
stream_peak() { # label, then the curl arguments
    local label="$1" before peak sampled=0 s
    shift
    # Settle: a few small requests so pool and buffers exist before the baseline figure.
    for _ in 1 2 3 4 5; do curl -s -o /dev/null --max-time 5 "$VEST_URL$PATH_JSON"; done
    before=$(rss_kb "$VEST_PID")
    echo 5 >"/proc/$VEST_PID/clear_refs" 2>/dev/null || true
    (
        for _ in $(seq 1 3000); do # at most 60 s
            s=$(rss_kb "$VEST_PID" 2>/dev/null) || exit 0
            [ -n "$s" ] || exit 0
            [ "$s" -gt "$sampled" ] && sampled=$s
            echo "$sampled" >"$TMP/sampler-$label"
            sleep 0.02
        done
    ) &
    local sampler=$!
    PIDS+=("$sampler")
    curl -s --max-time 120 "$@" -o "$TMP/stream-$label.out" -w '%{http_code} %{size_download} %{size_upload} %{time_total}\n' \
        >"$TMP/stream-$label.curl" || die "streaming ($label) failed"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    peak=$(hwm_kb "$VEST_PID")
    s=$(cat "$TMP/sampler-$label" 2>/dev/null || echo 0)
    if [ "$s" -gt "$peak" ]; then peak=$s; fi
    echo "$before $peak" >"$TMP/peak-$label"
}
log "streaming ${STREAM_MB} MB down and up through vestibule (RSS)"
stream_peak down --limit-rate 50M "$VEST_URL/api/big?mb=$STREAM_MB"
read -r DOWN_BEFORE DOWN_PEAK <"$TMP/peak-down"
DOWN_CURL=$(cat "$TMP/stream-down.curl")
# The upload is read from a pipe (curl -T -), so curl sends it chunked as it reads it.
stream_peak up -X POST -H 'content-type: application/octet-stream' -T - "$VEST_URL/api/upload" \
    < <(head -c "$((STREAM_MB * 1024 * 1024))" /dev/zero)
read -r UP_BEFORE UP_PEAK <"$TMP/peak-up"
UP_CURL=$(cat "$TMP/stream-up.curl")
UP_ECHO=$(cat "$TMP/stream-up.out")

# --- wrk ---------------------------------------------------------------------------------------
WRK_VERSION=$(wrk -v 2>&1 | head -n1 || true)
COMMANDS=()
run_wrk() { # name duration url [extra wrk args...]
    local name="$1" d="$2" url="$3"
    shift 3
    local cmd=(wrk -t1 "-c$CONNS" "-d${d}s" --latency --timeout 5s "$@" "$url") shown
    shown="${PIN_WRK[*]+"${PIN_WRK[*]} "}${cmd[*]}"
    shown="${shown//$TMP/<tmp>}"
    log "wrk [$name]: $shown"
    COMMANDS+=("[${name%-r[0-9]*}] $shown")
    timeout $((d + 30)) "${PIN_WRK[@]+"${PIN_WRK[@]}"}" "${cmd[@]}" >"$TMP/wrk-$name.txt" 2>&1 \
        || die "wrk [$name] failed: $(cat "$TMP/wrk-$name.txt")"
}
total_reqs() { awk '/requests in/ { print $1; exit }' "$TMP/wrk-$1.txt"; }
non2xx() { awk '/Non-2xx or 3xx responses:/ { print $NF; f = 1 } END { if (!f) print 0 }' "$TMP/wrk-$1.txt"; }
sock_err() {
    awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); print; f = 1 } END { if (!f) print "none" }' \
        "$TMP/wrk-$1.txt"
}
sub_ms() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "?" || b == "?") print "?"; else printf "%.3f", a - b }'; }

log "warm-up (${WARMUP}s each)"
for t in "${TARGETS[@]}"; do
    mapfile -t A < <(args_of "$t")
    run_wrk "warm-$t" "$WARMUP" "$(url_of "$t")" "${A[@]}"
done

# Each round measures every target back to back; the order rotates between rounds so a drift
# of the machine's speed does not favour one target. Ratios are taken per round, then the median.
ROWS=()
N=${#TARGETS[@]}
for r in $(seq 1 "$ROUNDS"); do
    log "round $r of $ROUNDS"
    for k in $(seq 0 $((N - 1))); do
        t=${TARGETS[$(((k + r - 1) % N))]}
        mapfile -t A < <(args_of "$t")
        run_wrk "$t-r$r" "$DURATION" "$(url_of "$t")" "${A[@]}"
        ROWS+=("$t-r$r")
    done
done

# Added latency is read at a paced load, not at saturation: there every server's latency is just
# connections / throughput, so p99 would measure req/s again. Each connection waits PACE_MS
# between its requests (wrk's delay() hook): at most CONNS * 1000 / PACE_MS req/s, well under
# what the upstream, Vestibule and nginx can serve here. Vite is left out (no latency target).
printf 'function delay()\n  return %s\nend\n' "$PACE_MS" >"$TMP/pace.lua"
LAT_TARGETS=(direct vestibule nginx)
LAT_ROWS=()
for r in $(seq 1 "$ROUNDS"); do
    log "paced latency, round $r of $ROUNDS"
    for k in 0 1 2; do
        t=${LAT_TARGETS[$(((k + r - 1) % 3))]}
        run_wrk "paced-$t-r$r" "$DURATION" "$(url_of "$t")" -s "$TMP/pace.lua"
        LAT_ROWS+=("paced-$t-r$r")
    done
done

# --- summary ------------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN {
    if (v == "?" || v == "") { print "n/a"; exit }
    if ((op == ">=" && v + 0 >= lim) || (op == "<" && v + 0 < lim)) print "PASS"; else print "FAIL" }'; }
per_round() { # fn target -> one value per round
    local r
    for r in $(seq 1 "$ROUNDS"); do printf '%s\n' "$("$1" "$2-r$r")"; done
}
p99() { pct "$1" 99; }
p50() { pct "$1" 50; }
ratio_rounds() { # a b scale -> per-round a/b
    local r
    for r in $(seq 1 "$ROUNDS"); do printf '%s\n' "$(div "$(rps "$1-r$r")" "$(rps "$2-r$r")" "$3")"; done
}
added_rounds() { # proxy [percentile fn] -> per-round paced p99(proxy) - paced p99(direct)
    local r fn="${2:-p99}"
    for r in $(seq 1 "$ROUNDS"); do printf '%s\n' "$(sub_ms "$("$fn" "paced-$1-r$r")" "$("$fn" "paced-direct-r$r")")"; done
}
ratio_line() { # label a b scale unit target op
    local vals m
    # shellcheck disable=SC2046
    vals=$(ratio_rounds "$2" "$3" "$4" | tr '\n' ' ')
    # shellcheck disable=SC2086
    m=$(median $vals)
    printf '%-34s %8s %-2s (per round: %s)  target %s %s: %s\n' "$1" "$m" "$5" "${vals% }" "$7" "$6" "$(verdict "$m" "$6" "$7")"
}
FMT='%-20s %11s %8s %8s %8s %8s %9s %7s\n'
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
{
    echo "Vestibule proxy benchmark — GET $PATH_JSON (1 KB JSON) through each proxy"
    echo "date:        $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "git:         $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (+ uncommitted changes under crates/)')"
    echo "host:        $(uname -sr), nproc $NCPU, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo '?')"
    echo "load tool:   $WRK_VERSION, -t1 -c$CONNS"
    echo "versions:    $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //'), node $(node --version 2>/dev/null || echo '?'), vite $( [ "$SKIP_VITE" = 1 ] && echo skipped || node -p "require('$VITE_DIR/node_modules/vite/package.json').version" 2>/dev/null)"
    echo "placement:   $PIN_NOTE"
    echo "load avg:    $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1/5/15 min; above ~$(nproc) other processes were competing for the CPUs, and absolute figures and ratios are noisy)"
    echo "workers:     $WORKERS each: upstream and vestibule TOKIO_WORKER_THREADS=$WORKERS, nginx worker_processes $WORKERS, Vite one node process"
    echo "bodies:      ${BODY_NOTE[*]} bytes"
    echo "plan:        $ROUNDS round(s) x ${TARGETS[*]} (order rotating), wrk -d${DURATION}s each, after a ${WARMUP}s warm-up of each;"
    echo "             then $ROUNDS round(s) x ${LAT_TARGETS[*]} paced (each connection waits ${PACE_MS} ms between requests) for latency"
    echo
    # shellcheck disable=SC2059
    printf "$FMT" run req/s p50_ms p90_ms p99_ms max_ms requests non2xx
    for name in "${ROWS[@]}" "${LAT_ROWS[@]}"; do
        max=$(awk '$1 == "Latency" && NF >= 4 { print $4; exit }' "$TMP/wrk-$name.txt")
        # shellcheck disable=SC2059
        printf "$FMT" "$name" "$(rps "$name")" "$(pct "$name" 50)" "$(pct "$name" 90)" \
            "$(pct "$name" 99)" "$( [ -n "$max" ] && to_ms "$max" || echo '?')" "$(total_reqs "$name")" "$(non2xx "$name")"
    done
    echo
    echo "(<target>-rN: saturated, wrk as fast as it can; paced-<target>-rN: the latency runs)"
    echo
    echo "medians over $ROUNDS round(s) (spread min-max):"
    for t in "${TARGETS[@]}"; do
        # shellcheck disable=SC2046
        printf '  %-10s req/s %10s (%s)   saturated p99 %s ms (%s)\n' "$t" \
            "$(median $(per_round rps "$t"))" "$(spread $(per_round rps "$t"))" \
            "$(median $(per_round p99 "$t"))" "$(spread $(per_round p99 "$t"))"
    done
    for t in "${LAT_TARGETS[@]}"; do
        # shellcheck disable=SC2046
        printf '  %-10s paced: req/s %s, p50 %s ms, p99 %s ms (%s)\n' "$t" \
            "$(median $(per_round rps "paced-$t"))" "$(median $(per_round p50 "paced-$t"))" \
            "$(median $(per_round p99 "paced-$t"))" "$(spread $(per_round p99 "paced-$t"))"
    done
    echo
    ratio_line "vestibule / direct" vestibule direct 100 % 60 '>='
    ratio_line "vestibule / nginx (same workers)" vestibule nginx 100 % 80 '>='
    ratio_line "vestibule / caddy (same workers)" vestibule caddy 1 x 1.3 '>='
    [ "$SKIP_VITE" = 1 ] || ratio_line "vestibule / vite" vestibule vite 1 x 3 '>='
    ratio_line "nginx / direct (reference)" nginx direct 100 % 0 '>='
    ratio_line "bare axum proxy / nginx (reference)" bare nginx 100 % 0 '>='
    ratio_line "vestibule / bare axum proxy" vestibule bare 100 % 0 '>='
    ratio_line "vestibule / bare proxy with header work" vestibule barefull 100 % 0 '>='
    ratio_line "authenticated / anonymous_ok" vestauth vestibule 100 % 0 '>='
    ratio_line "authenticated / caddy" vestauth caddy 1 x 0 '>='
    for t in vestibule nginx; do
        vals=$(added_rounds "$t" | tr '\n' ' ')
        # shellcheck disable=SC2086
        m=$(median $vals)
        if [ "$t" = vestibule ]; then tgt="  target < 1 ms: $(verdict "$m" 1 '<')"; else tgt=""; fi
        printf '%-34s %8s ms (per round: %s)%s\n' "added p99 at -c$CONNS paced, $t" "$m" "${vals% }" "$tgt"
    done
    # The p50 difference is the steadier figure when other processes share the servers' CPU.
    for t in vestibule nginx; do
        vals=$(added_rounds "$t" p50 | tr '\n' ' ')
        # shellcheck disable=SC2086
        printf '%-34s %8s ms (per round: %s)\n' "added p50 at -c$CONNS paced, $t" "$(median $vals)" "${vals% }"
    done
    down_delta=$((DOWN_PEAK - DOWN_BEFORE))
    up_delta=$((UP_PEAK - UP_BEFORE))
    echo "streaming $STREAM_MB MB download (client --limit-rate 50M): vestibule RSS $(mb "$DOWN_BEFORE") MB before, peak $(mb "$DOWN_PEAK") MB: +$(mb "$down_delta") MB  target < +20 MB: $(verdict "$(mb "$down_delta")" 20 '<')  (curl: $DOWN_CURL)"
    echo "streaming $STREAM_MB MB upload (chunked):                 vestibule RSS $(mb "$UP_BEFORE") MB before, peak $(mb "$UP_PEAK") MB: +$(mb "$up_delta") MB  target < +20 MB: $(verdict "$(mb "$up_delta")" 20 '<')  (curl: $UP_CURL; upstream: $UP_ECHO)"
    echo
    errs=()
    for name in "${ROWS[@]}" "${LAT_ROWS[@]}"; do
        e=$(sock_err "$name")
        [ "$e" = none ] || errs+=("$name: socket errors $e")
        n=$(non2xx "$name")
        [ "$n" = 0 ] || errs+=("$name: $n non-2xx responses (run invalid)")
    done
    if [ "${#errs[@]}" -eq 0 ]; then
        echo "errors:      none (no socket errors, no non-2xx responses)"
    else
        echo "errors:"
        printf '  %s\n' "${errs[@]}"
    fi
    echo
    echo "commands:"
    echo "  upstream:  ${PIN_SRV[*]+"${PIN_SRV[*]} "}env TOKIO_WORKER_THREADS=$WORKERS bench/baseline/target/release/bench-baseline $HOST:$UP_PORT upstream"
    echo "  vestibule: ${PIN_SRV[*]+"${PIN_SRV[*]} "}env TOKIO_WORKER_THREADS=$WORKERS VESTIBULE_LOG=warn ${VEST_BIN#"$ROOT"/} --config <tmp>/vestibule.toml --database <tmp>/bench.db serve --listen $HOST:$VEST_PORT"
    sed 's/^/    | /' "$TMP/vestibule.toml"
    echo "  bare:      ${PIN_SRV[*]+"${PIN_SRV[*]} "}env TOKIO_WORKER_THREADS=$WORKERS bench/baseline/target/release/bench-baseline $HOST:$BARE_PORT proxy $UP_URL"
    echo "  barefull:  ${PIN_SRV[*]+"${PIN_SRV[*]} "}env TOKIO_WORKER_THREADS=$WORKERS bench/baseline/target/release/bench-baseline $HOST:$BAREFULL_PORT proxyfull $UP_URL"
    echo "  caddy:     ${PIN_SRV[*]+"${PIN_SRV[*]} "}env GOMAXPROCS=$WORKERS caddy run (reverse_proxy $HOST:$UP_PORT, admin off, auto_https off)"
    echo "  nginx:     ${PIN_SRV[*]+"${PIN_SRV[*]} "}nginx -p <tmp>/nginx -c <tmp>/nginx/nginx.conf   (location /api/ { proxy_pass; keepalive 64; HTTP/1.1; X-Forwarded-*, Forwarded })"
    [ "$SKIP_VITE" = 1 ] || echo "  vite:      ${PIN_SRV[*]+"${PIN_SRV[*]} "}node node_modules/vite/bin/vite.js --config bench/vite-proxy/vite.config.js   (server.proxy '/api')"
    printf '%s\n' "${COMMANDS[@]}" | awk '!seen[$0]++' | sed 's/^/  /'
    echo "  (<tmp>/pace.lua: function delay() return $PACE_MS end)"
    warns=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/vestibule.log" | grep -E 'WARN|ERROR|panick' | tail -n 10 || true)
    echo
    echo "vestibule log, WARN/ERROR lines (last 10): ${warns:+$'\n'}${warns:-none}" | sed '2,$s/^/  /'
} | tee "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
for name in "${TARGETS[@]/#/warm-}" "${ROWS[@]}" "${LAT_ROWS[@]}"; do
    printf '===== %s\n' "$name"
    cat "$TMP/wrk-$name.txt"
done >"$RESULTS_DIR/proxy-raw.txt"
log "written $OUT and $RESULTS_DIR/proxy-raw.txt"
