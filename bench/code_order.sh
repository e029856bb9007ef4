#!/usr/bin/env bash
# Writes crates/vestibule-cli/code-order.txt: the functions `vestibule serve` runs on the default
# config (start-up, the background tasks of an idle server, and the requests every SPA makes),
# hottest first. The release build links them together at the front of the code
# (crates/vestibule-cli/build.rs), so the pages the kernel maps around each function that runs
# hold other functions that run, not code that never does: see bench/RESULTS.md, "Code order".
#
#   bash bench/code_order.sh            # then rebuild: cargo build --release -p vestibule-cli
#
# The server runs once under `valgrind --tool=callgrind --demangle=no` from its first
# instruction, so the list holds the binary's own symbol names. Workload: start, GET /healthz,
# a signup, a login with a cookie and one asking for a bearer token, GET /auth/me with each,
# an access token created, listed and revoked, the session list, the gateway
# (an `anonymous_ok` upstream, and a `require_auth` one with identity headers and the signed
# assertion, both to a Python http.server), a CSRF-checked POST (logout), a 404, a refused
# login and an invalid JSON body, then QUIET s idle (the allocator's purge task, the store's
# housekeeping). Loopback only; every step is bounded.
#
# Knobs: VEST_BIN (default target/release/vestibule), SKIP_BUILD=1, QUIET (s, default 6),
# OUT (default crates/vestibule-cli/code-order.txt).
#
# The names carry hashes that change when a dependency or the compiler changes; names that no
# longer exist are ignored at link time (the rest still packs), so rerun this after such an
# upgrade and check the figure with bench/memory.sh.
set -euo pipefail
export LC_ALL=C
export VESTIBULE_LOG=warn # not via `env`, which valgrind would not follow

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VEST_BIN="${VEST_BIN:-$ROOT/target/release/vestibule}"
QUIET="${QUIET:-6}"
OUT="${OUT:-$ROOT/crates/vestibule-cli/code-order.txt}"
PORT=18481
UP_PORT=18482
HOST=127.0.0.1 # loopback only
PASSWORD='quiet-harbour-lantern-42'
BENCH_NAME=code-order
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for tool in valgrind callgrind_control curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install valgrind curl python3)"
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building the release binary"
    cargo build --release -q -p vestibule-cli
fi
[ -x "$VEST_BIN" ] || die "no $VEST_BIN"

(cd "$TMP" && printf '%s\n' "$PASSWORD" | "$VEST_BIN" --database "$TMP/o.db" user add bench \
    --password-stdin) >/dev/null 2>&1 || die "user add failed"
mkdir -p "$TMP/up"
printf '{"items":[1,2,3],"note":"the upstream"}\n' >"$TMP/up/json"
python3 -m http.server --bind "$HOST" --directory "$TMP/up" "$UP_PORT" >"$TMP/up.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_http "http://$HOST:$UP_PORT/json" "$UP_PID" "$TMP/up.log" 20 200
cat >"$TMP/vestibule.toml" <<EOF
[auth]
signup = true

[[upstream]]
prefix = "/api"
url = "http://$HOST:$UP_PORT"
policy = "anonymous_ok"
strip_prefix = true

[[upstream]]
prefix = "/private"
url = "http://$HOST:$UP_PORT"
policy = "require_auth"
strip_prefix = true
identity_assertion = true
EOF
dump="$TMP/callgrind.out"
log "starting the server under callgrind"
(cd "$TMP" && exec valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dump" \
    "$VEST_BIN" --config "$TMP/vestibule.toml" --database "$TMP/o.db" serve --listen "$HOST:$PORT") >"$TMP/server.log" 2>&1 &
PID=$!
PIDS+=("$PID")
URL="http://$HOST:$PORT"
wait_http "$URL/healthz" "$PID" "$TMP/server.log" 120 200

c() { curl -s --max-time 60 "$@"; }
login='{"username":"bench","password":"'"$PASSWORD"'"}'
c -o /dev/null "$URL/healthz"
c -c "$TMP/jar" -o /dev/null -H 'content-type: application/json' -d "$login" "$URL/auth/login"
me=$(c -b "$TMP/jar" "$URL/auth/me")
csrf=$(printf '%s' "$me" | sed -n 's/.*"csrf_token":"\([^"]*\)".*/\1/p')
[ -n "$csrf" ] || die "no CSRF token from /auth/me: $me"
for _ in 1 2 3; do c -b "$TMP/jar" -o /dev/null "$URL/auth/me"; done
# Unsafe methods with the cookie: the CSRF token and the Origin.
cw() { c -b "$TMP/jar" -H "X-CSRF-Token: $csrf" -H "Origin: $URL" "$@"; }
code=$(c -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    -d '{"username":"newcomer","password":"another-harbour-lantern-43"}' "$URL/auth/signup")
[ "$code" = 200 ] || [ "$code" = 201 ] || die "signup answered $code"
made=$(cw -H 'content-type: application/json' -d '{"name":"code-order"}' "$URL/auth/tokens")
id=$(printf '%s' "$made" | sed -n 's/.*"id":"\{0,1\}\([^",}]*\).*/\1/p')
[ -n "$id" ] || die "no token id from POST /auth/tokens: $made"
c -b "$TMP/jar" -o /dev/null "$URL/auth/tokens"
code=$(cw -o /dev/null -w '%{http_code}' -X DELETE "$URL/auth/tokens/$id")
[ "$code" = 204 ] || [ "$code" = 200 ] || die "DELETE /auth/tokens/$id answered $code"
c -b "$TMP/jar" -o /dev/null "$URL/auth/sessions"
body=$(c -H 'content-type: application/json' \
    -d '{"username":"bench","password":"'"$PASSWORD"'","transport":"bearer"}' "$URL/auth/login")
token=$(printf '%s' "$body" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || die "no bearer token from the login: $body"
for _ in 1 2 3; do c -o /dev/null -H "Authorization: Bearer $token" "$URL/auth/me"; done
for _ in 1 2 3; do
    code=$(c -o /dev/null -w '%{http_code}' "$URL/api/json")
    [ "$code" = 200 ] || die "GET /api/json through the gateway answered $code"
    code=$(c -o /dev/null -w '%{http_code}' -b "$TMP/jar" "$URL/private/json")
    [ "$code" = 200 ] || die "GET /private/json through the gateway answered $code"
done
c -o /dev/null "$URL/no-such-page"
c -o /dev/null -H 'content-type: application/json' -d '{"username":"bench","password":"wrong"}' \
    "$URL/auth/login"
c -o /dev/null -H 'content-type: application/json' -d '{"username":' "$URL/auth/login"
code=$(cw -o /dev/null -w '%{http_code}' -X POST "$URL/auth/logout")
[ "$code" = 204 ] || [ "$code" = 200 ] || die "logout answered $code"
log "idle for $QUIET s"
sleep "$QUIET"
callgrind_control -d "$PID" >/dev/null
kill "$PID" 2>/dev/null || true
wait "$PID" 2>/dev/null || true
part="$dump.1"
[ -f "$part" ] || part=$(ls "$dump".* 2>/dev/null | head -1)
[ -f "$part" ] || die "no callgrind dump"
python3 "$ROOT/bench/code_order.py" "$part" "$VEST_BIN" >"$TMP/order.txt"
n=$(wc -l <"$TMP/order.txt")
[ "$n" -gt 1000 ] || die "only $n functions seen: $(tail -c 600 "$TMP/server.log")"
mv "$TMP/order.txt" "$OUT"
log "written $OUT ($n functions)"
