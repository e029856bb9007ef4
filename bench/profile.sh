#!/usr/bin/env bash
# Instructions per request, counted by callgrind: a figure that does not depend on what else the
# machine is doing (the wall-clock benchmarks do), so a regression on the request path shows up
# here even on a busy 2-core machine. Loopback only; every loop is bounded.
#
#   bash bench/profile.sh            # all scenarios
#   SCENARIOS="me proxy" bash bench/profile.sh
#
# Scenarios:
#   base    the bare axum handler of bench/baseline (the ceiling for `me`)
#   me      GET /auth/me with a session cookie (default store)
#   bearer  GET /auth/me with a bearer session token
#   up      the 1 KB JSON upstream of bench/baseline, directly (the ceiling for `proxy`)
#   proxy   the same upstream through `vestibule serve` with an [[upstream]]
#   bare    the same upstream through the smallest axum + hyper-util proxy (bench/baseline's
#           `proxy` mode): the floor of the stack the gateway is built on
#   barefull  the same proxy doing the header work a correct reverse proxy must do (bench/baseline's
#           `proxyfull` mode: hop-by-hop headers both ways, `Forwarded` and `X-Forwarded-*`, a
#           response timeout, the request id and security headers): the floor for `proxy`
#   nginx   the same upstream through nginx `proxy_pass` (one process, master_process off, the
#           same forwarding headers as bench/proxy.sh), for reference
#   peer    GET /auth/me with a session cookie on the hand-rolled axum + tower-sessions peer
#           (bench/baseline's `peer` mode, memory store): the stack `me` is measured against
#   peerbearer  the same peer's hand-written bearer lookup (against `bearer`)
#   peerfull    GET /auth/me with a session cookie on the same axum peer doing the per-request work
#               Vestibule's /auth/me promises (bench/baseline's `peerfull` mode: token hashed before
#               the lookup, derived and masked CSRF token, request id, security headers; memory
#               map): the floor of the stack for `me`
#   peerfullbearer  the same with a bearer token, hashed before the lookup (the floor for `bearer`)
#
# Each scenario starts the server under `valgrind --tool=callgrind` with instrumentation off,
# warms it up with WARM requests, switches instrumentation on, sends N requests over one
# kept-alive connection (curl with a config file of N URLs), dumps the counts and stops it.
# Only the server process under test is counted (for `proxy`: Vestibule, not the upstream).
#
# Knobs: N (requests counted, default 2000), WARM (default 200), TOP (functions listed, 25),
# CACHE_SIM (1 = also simulate the caches and print I1 / D1 / last-level misses per request),
# CACHE_OPTS (with CACHE_SIM: valgrind's cache geometry, e.g. "--D1=65536,8,64" to ask whether a
# request's data would fit a larger first-level cache; default the host's),
# VEST_BIN, SKIP_BUILD (1 = use existing binaries), RESULTS_DIR (where the output goes, default
# bench/results), KEEP (a directory to keep the raw callgrind dumps in, for callgrind_annotate or
# kcachegrind).
# Output: bench/results/profile.txt (summary: instructions per request per scenario) and
# bench/results/profile-<scenario>.txt (callgrind_annotate, inclusive, top functions).
set -euo pipefail
export LC_ALL=C
export VESTIBULE_LOG=warn # every Vestibule started here; not via `env`, which valgrind would not follow

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SCENARIOS="${SCENARIOS:-base me bearer peer peerbearer peerfull peerfullbearer up proxy bare barefull nginx}"
N="${N:-2000}"
WARM="${WARM:-200}"
TOP="${TOP:-25}"
SKIP_BUILD="${SKIP_BUILD:-0}"
PORT=18451
UP_PORT=18452
HOST=127.0.0.1 # loopback only

VEST_BIN="${VEST_BIN:-$ROOT/target/release/vestibule}"
BASE_MANIFEST="$ROOT/bench/baseline/Cargo.toml"
BASE_BIN="${BASE_BIN:-$ROOT/bench/baseline/target/release/bench-baseline}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench/results}"
OUT="$RESULTS_DIR/profile.txt"
PASSWORD='quiet-harbour-lantern-42'

BENCH_NAME=profile
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for tool in valgrind callgrind_control callgrind_annotate curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install valgrind curl)"
done
if [ "$SKIP_BUILD" != 1 ]; then
    log "building release binaries"
    cargo build --release -q -p vestibule-cli
    cargo build --release -q --manifest-path "$BASE_MANIFEST"
fi
[ -x "$VEST_BIN" ] || die "no $VEST_BIN"
[ -x "$BASE_BIN" ] || die "no $BASE_BIN"

# valgrind starts slowly.
wait_up() { wait_http "$1" "$2" "$3" 60; }

# Writes a curl config of $2 requests to URL $1 (extra header lines in $3) into $4.
curl_config() {
    local i
    : >"$4"
    for ((i = 0; i < $2; i++)); do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$1" >>"$4"
    done
    if [ -n "$3" ]; then printf '%s\n' "$3" >>"$4"; fi
}

# Runs one scenario: $1 name, $2 URL to load, $3 curl header line ('' for none), then the
# server command. The server runs under callgrind from $TMP.
profile() {
    local name=$1 url=$2 hdr=$3
    shift 3
    local out="$TMP/callgrind.$name.out"
    log "$name: starting under callgrind"
    # shellcheck disable=SC2086 # CACHE_OPTS is a list of valgrind options
    (cd "$TMP" && exec valgrind --tool=callgrind --instr-atstart=no ${CACHE_SIM:+--cache-sim=yes} \
        ${CACHE_SIM:+${CACHE_OPTS:-}} --callgrind-out-file="$out" "$@") >"$TMP/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_up "$url" "$pid" "$TMP/$name.log"
    # A scenario whose credential lives only in the server's memory logs in here, while the
    # instrumentation is still off (PREP sets hdr).
    if [ -n "${PREP:-}" ]; then "$PREP"; fi
    curl_config "$url" "$WARM" "$hdr" "$TMP/warm.cfg"
    curl_config "$url" "$N" "$hdr" "$TMP/run.cfg"
    curl -s --max-time 600 -K "$TMP/warm.cfg"
    callgrind_control -i on "$pid" >/dev/null
    curl -s --max-time 600 -w '%{http_code}\n' -K "$TMP/run.cfg" >"$TMP/codes"
    callgrind_control -d "$pid" >/dev/null
    callgrind_control -i off "$pid" >/dev/null
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local ok
    ok=$(grep -c '^200$' "$TMP/codes" || true)
    [ "$ok" = "$N" ] || die "$name: only $ok of $N requests answered 200"
    # The dump written by `callgrind_control -d` is <out>.1 (the exit dump is <out>).
    local dump="$out.1"
    [ -f "$dump" ] || dump=$(ls "$out".* 2>/dev/null | head -1)
    [ -f "$dump" ] || die "$name: no callgrind dump"
    local total
    total=$(grep -m1 '^summary:' "$dump" | awk '{print $2}')
    [ -n "$total" ] || total=$(grep -m1 '^totals:' "$dump" | awk '{print $2}')
    printf '%-14s %12d instructions/request  (%d requests, %s in all)\n' \
        "$name" $((total / N)) "$N" "$total" | tee -a "$TMP/summary"
    if [ -n "${CACHE_SIM:-}" ]; then
        # Simulated misses per request (events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw): what
        # instruction counts cannot show, a larger code and data footprint per request.
        grep -m1 '^summary:' "$dump" | awk -v n="$N" -v name="$name" '{
            printf "%-14s %12.0f I1 misses  %8.0f D1 misses  %6.1f LL misses  per request\n",
                name, $3 / n, ($6 + $9) / n, ($4 + $7 + $10) / n }' | tee -a "$TMP/summary"
    fi
    callgrind_annotate --inclusive=yes "$dump" >"$TMP/annotate.$name" 2>/dev/null || true
    head -n $((TOP + 30)) "$TMP/annotate.$name" >"$RESULTS_DIR/profile-$name.txt"
    if [ -n "${KEEP:-}" ]; then cp "$dump" "$KEEP/callgrind.$name.out"; fi
}

mkdir -p "$RESULTS_DIR"
: >"$TMP/summary"

for s in $SCENARIOS; do
    case "$s" in
    base)
        profile base "http://$HOST:$PORT/auth/me" '' "$BASE_BIN" "$HOST:$PORT"
        ;;
    up)
        profile up "http://$HOST:$PORT/api/json" '' "$BASE_BIN" "$HOST:$PORT" upstream
        ;;
    me | bearer)
        db="$TMP/$s.db"
        (cd "$TMP" && printf '%s\n' "$PASSWORD" | "$VEST_BIN" --database "$db" user add bench \
            --password-stdin) >/dev/null 2>&1 || die "user add failed"
        # Log in against a plain (uninstrumented) run to get the credential, then profile.
        (cd "$TMP" && exec "$VEST_BIN" --database "$db" serve \
            --listen "$HOST:$PORT") >"$TMP/login.log" 2>&1 &
        lp=$!
        PIDS+=("$lp")
        wait_up "http://$HOST:$PORT/healthz" "$lp" "$TMP/login.log"
        if [ "$s" = me ]; then
            cred=$(curl -s -D - -o /dev/null --max-time 10 -H 'content-type: application/json' \
                -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" \
                "http://$HOST:$PORT/auth/login" | tr -d '\r' |
                sed -n 's/^[Ss]et-[Cc]ookie: \(vestibule_session=[^;]*\).*/\1/p' | head -1)
            [ -n "$cred" ] || die "login gave no session cookie"
            hdr="header = \"Cookie: $cred\""
        else
            tok=$(curl -s --max-time 10 -H 'content-type: application/json' \
                -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\",\"transport\":\"bearer\"}" \
                "http://$HOST:$PORT/auth/login" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
            [ -n "$tok" ] || die "bearer login gave no token"
            hdr="header = \"Authorization: Bearer $tok\""
        fi
        kill "$lp"
        wait "$lp" 2>/dev/null || true
        profile "$s" "http://$HOST:$PORT/auth/me" "$hdr" \
            "$VEST_BIN" --database "$db" serve --listen "$HOST:$PORT"
        ;;
    peer | peerbearer | peerfull | peerfullbearer)
        peer_login() {
            local body
            body=$(curl -s -c "$TMP/peer.jar" --max-time 30 -X POST "http://$HOST:$PORT/auth/login")
            if [ "$s" = peer ] || [ "$s" = peerfull ]; then
                local id
                id=$(awk '$6 == "id" {print $7}' "$TMP/peer.jar")
                [ -n "$id" ] || die "peer login gave no session cookie"
                hdr="header = \"Cookie: id=$id\""
            else
                local tok
                tok=$(printf '%s' "$body" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
                [ -n "$tok" ] || die "peer login gave no bearer token"
                hdr="header = \"Authorization: Bearer $tok\""
            fi
        }
        # wait_up polls /auth/me, which answers 401 until the login: any answer means up.
        mode=peer
        case "$s" in peerfull*) mode=peerfull ;; esac
        PREP=peer_login profile "$s" "http://$HOST:$PORT/auth/me" '' "$BASE_BIN" "$HOST:$PORT" "$mode"
        ;;
    proxy | bare | barefull | nginx)
        if [ -z "${up:-}" ]; then
            "$BASE_BIN" "$HOST:$UP_PORT" upstream >"$TMP/upstream.log" 2>&1 &
            up=$!
            PIDS+=("$up")
            wait_up "http://$HOST:$UP_PORT/api/json" "$up" "$TMP/upstream.log"
        fi
        if [ "$s" = nginx ]; then
            command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || die "nginx is missing (apt-get install nginx)"
            nginx_proxy_conf "$TMP/nginx" "$HOST:$PORT" "$HOST:$UP_PORT" "worker_processes 1;
master_process off;"
            profile nginx "http://$HOST:$PORT/api/json" '' "$(command -v nginx || echo /usr/sbin/nginx)" \
                -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
            continue
        fi
        if [ "$s" = bare ]; then
            profile bare "http://$HOST:$PORT/api/json" '' "$BASE_BIN" "$HOST:$PORT" proxy \
                "http://$HOST:$UP_PORT"
            continue
        fi
        if [ "$s" = barefull ]; then
            profile barefull "http://$HOST:$PORT/api/json" '' "$BASE_BIN" "$HOST:$PORT" proxyfull \
                "http://$HOST:$UP_PORT"
            continue
        fi
        printf '[[upstream]]\nprefix = "/api"\nurl = "http://%s:%s"\npolicy = "anonymous_ok"\n' \
            "$HOST" "$UP_PORT" >"$TMP/vestibule.toml"
        profile proxy "http://$HOST:$PORT/api/json" '' "$VEST_BIN" \
            --config "$TMP/vestibule.toml" --database "$TMP/proxy.db" serve --listen "$HOST:$PORT"
        ;;
    *) die "unknown scenario $s" ;;
    esac
done

{
    echo "Vestibule request path — instructions per request (callgrind)"
    echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git:    $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet -- . ':!bench/results' 2>/dev/null || echo ' (with local changes)')"
    echo "plan:   $WARM warm-up requests, then $N counted, one kept-alive connection (curl)"
    echo
    cat "$TMP/summary"
} | tee "$OUT.new" >&2
mv "$OUT.new" "$OUT"
