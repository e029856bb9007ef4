#!/usr/bin/env bash
# A profile-guided build of `vestibule`: the compiler is shown which code a running server
# actually takes (the requests every page load makes, logins, the gateway) and lays out and
# inlines the release binary for it. Instruction counts do not see what this changes; CPU time
# per request does (bench/RESULTS.md, issue 20: the bearer path ran fewer instructions per
# nanosecond than its floor, and PGO is the compiler's own answer to that).
#
#   bash bench/pgo.sh            # writes target/pgo/release/vestibule
#   PEER=1 bash bench/pgo.sh     # the floors and peers (bench/baseline) built the same way, into
#                                # bench/baseline/target/pgo/release/bench-baseline, so that a
#                                # comparison can also be made profile-guided on both sides
#
# Steps, each in its own cargo target directory so the plain release build is left alone:
#   1. an instrumented build (`-Cprofile-generate`) into target/pgo-gen;
#   2. training, on loopback only and bounded in time: `vestibule serve` with a fresh database,
#      a user, logins with a cookie and with a bearer token, `GET /auth/me` both ways under wrk,
#      `/healthz`, and a proxied `GET` through an `[[upstream]]` to bench/baseline's 1 KB JSON
#      upstream; then the rest of the API a few times each (signups, the account's pages, a
#      token, refusals, CORS preflights, a CSRF-checked logout), since code a profile never saw
#      is compiled as cold; then SIGTERM, so that the process exits through `main` and writes
#      its profile;
#   3. `llvm-profdata merge`;
#   4. the release build again with `-Cprofile-use` into target/pgo.
# The code order (crates/vestibule-cli/build.rs) applies to both builds as to any release build.
#
# Needs an llvm-profdata of the LLVM that rustc is built on (`rustc -vV`): Debian's
# `llvm-profdata-N` (`apt-get install llvm-N`, installed here when missing) or rustup's
# `llvm-tools`. A profile of another LLVM version is refused by the merge, never used silently.
# Knobs: TRAIN_SECONDS (per wrk load, 4), PGO_DIR (profiles, default target/pgo-profiles),
# SKIP_GEN=1 (reuse the instrumented binary), SKIP_TRAIN=1 (reuse the merged profile).
set -euo pipefail
export LC_ALL=C
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TRAIN_SECONDS="${TRAIN_SECONDS:-4}"
PGO_DIR="${PGO_DIR:-$ROOT/target/pgo-profiles}"
GEN_TARGET="$ROOT/target/pgo-gen"
USE_TARGET="$ROOT/target/pgo"
BASE_BIN="$ROOT/bench/baseline/target/release/bench-baseline"
HOST=127.0.0.1 # loopback only
PORT=18720
UP_PORT=18721
PASSWORD='quiet-harbour-lantern-42'
BENCH_NAME=pgo
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$llvm_major" ] || die "rustc -vV names no LLVM version"
find_profdata() {
    local c
    for c in "llvm-profdata-$llvm_major" \
        "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata" \
        llvm-profdata; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" --version 2>/dev/null | grep -q "LLVM version $llvm_major\."; then
            echo "$c"
            return 0
        fi
    done
    return 1
}
PROFDATA=$(find_profdata || true)
if [ -z "$PROFDATA" ]; then
    log "no llvm-profdata for LLVM $llvm_major: installing Debian's llvm-$llvm_major"
    apt_install "llvm-$llvm_major" >&2 || die "install llvm-$llvm_major, or: rustup component add llvm-tools"
    PROFDATA=$(find_profdata) || die "llvm-profdata for LLVM $llvm_major still missing"
fi
missing=()
for tool in wrk curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}" >&2

# One bounded wrk load (loopback): URL [header]; every answer must be 2xx.
wrk_load() {
    local out
    out=$(timeout $((TRAIN_SECONDS + 30)) wrk -t1 -c16 "-d${TRAIN_SECONDS}s" --timeout 5s \
        ${2:+-H "$2"} "$1") || die "wrk on $1 failed: $out"
    grep -q 'Non-2xx' <<<"$out" && die "$1: some answers were not 2xx"
    log "  $1: $(awk '/^Requests\/sec:/ { print $2 }' <<<"$out") req/s"
}

if [ "${PEER:-0}" = 1 ]; then
    # bench/baseline's own workspace and target directory; its modes are trained as the bench
    # scripts run them: peer and peerfull (cookie and bearer), the bare handler, the proxies.
    PGO_DIR="$ROOT/bench/baseline/target/pgo-profiles"
    MANIFEST="$ROOT/bench/baseline/Cargo.toml"
    GEN_BIN="$ROOT/bench/baseline/target/pgo-gen/release/bench-baseline"
    rm -rf "$PGO_DIR"
    log "1/4 instrumented build of bench/baseline"
    RUSTFLAGS="-Cprofile-generate=$PGO_DIR/raw" CARGO_TARGET_DIR="$ROOT/bench/baseline/target/pgo-gen" \
        cargo build --release -q --manifest-path "$MANIFEST"
    log "2/4 training its modes (${TRAIN_SECONDS} s per load)"
    run_mode() { # mode [args] -> PID in $MODE_PID
        env LLVM_PROFILE_FILE="$PGO_DIR/raw/$1-%p.profraw" "$GEN_BIN" "$HOST:$PORT" "$@" \
            >"$TMP/$1.log" 2>&1 &
        MODE_PID=$!
        PIDS+=("$MODE_PID")
        wait_http "http://$HOST:$PORT/" "$MODE_PID" "$TMP/$1.log"
    }
    stop_mode() {
        kill -TERM "$MODE_PID"
        for _ in $(seq 1 100); do kill -0 "$MODE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$MODE_PID" 2>/dev/null && die "bench-baseline did not stop on SIGTERM"
        return 0
    }
    url="http://$HOST:$PORT"
    for mode in peer peerfull; do
        run_mode "$mode"
        curl -s -c "$TMP/$mode.jar" --max-time 10 -X POST "$url/auth/login" >/dev/null
        cookie=$(awk '$6 == "id" { print $6 "=" $7 }' "$TMP/$mode.jar" | head -1)
        token=$(curl -s --max-time 10 -X POST "$url/auth/login" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
        [ -n "$cookie" ] && [ -n "$token" ] || die "$mode: login failed"
        wrk_load "$url/auth/me" "Cookie: $cookie"
        wrk_load "$url/auth/me" "Authorization: Bearer $token"
        stop_mode
    done
    run_mode bare
    wrk_load "$url/auth/me"
    stop_mode
    "$GEN_BIN" "$HOST:$UP_PORT" upstream >"$TMP/upstream.log" 2>&1 &
    PIDS+=("$!")
    wait_http "http://$HOST:$UP_PORT/api/json" "$!" "$TMP/upstream.log"
    for mode in proxy proxyfull; do
        run_mode "$mode" "http://$HOST:$UP_PORT"
        wrk_load "$url/api/json"
        stop_mode
    done
    log "3/4 merging"
    "$PROFDATA" merge -o "$PGO_DIR/merged.profdata" "$PGO_DIR/raw"
    log "4/4 the release build with the profile"
    RUSTFLAGS="-Cprofile-use=$PGO_DIR/merged.profdata" CARGO_TARGET_DIR="$ROOT/bench/baseline/target/pgo" \
        cargo build --release -q --manifest-path "$MANIFEST"
    log "wrote bench/baseline/target/pgo/release/bench-baseline"
    exit 0
fi

if [ "${SKIP_TRAIN:-0}" != 1 ]; then
    if [ "${SKIP_GEN:-0}" != 1 ]; then
        log "1/4 instrumented build into $GEN_TARGET"
        rm -rf "$PGO_DIR"
        RUSTFLAGS="-Cprofile-generate=$PGO_DIR/raw" CARGO_TARGET_DIR="$GEN_TARGET" \
            cargo build --release -q -p vestibule-cli
    fi
    rm -rf "$PGO_DIR/raw"
    [ -x "$BASE_BIN" ] || cargo build --release -q --manifest-path bench/baseline/Cargo.toml
    GEN_BIN="$GEN_TARGET/release/vestibule"
    [ -x "$GEN_BIN" ] || die "no instrumented binary at $GEN_BIN"

    log "2/4 training on $HOST:$PORT (${TRAIN_SECONDS} s per load)"
    "$BASE_BIN" "$HOST:$UP_PORT" upstream >"$TMP/upstream.log" 2>&1 &
    PIDS+=("$!")
    wait_http "http://$HOST:$UP_PORT/api/json" "$!" "$TMP/upstream.log"
    printf '[auth]\nsignup = true\n\n[[upstream]]\nprefix = "/api"\nurl = "http://%s:%s"\npolicy = "anonymous_ok"\n' \
        "$HOST" "$UP_PORT" >"$TMP/vestibule.toml"
    (cd "$TMP" && printf '%s\n' "$PASSWORD" | LLVM_PROFILE_FILE="$PGO_DIR/raw/cli-%p.profraw" \
        "$GEN_BIN" --database "$TMP/pgo.db" user add bench --password-stdin) >/dev/null 2>&1 ||
        die "user add failed"
    (cd "$TMP" && exec env LLVM_PROFILE_FILE="$PGO_DIR/raw/serve-%p.profraw" VESTIBULE_LOG=warn \
        "$GEN_BIN" --config "$TMP/vestibule.toml" --database "$TMP/pgo.db" serve \
        --listen "$HOST:$PORT") >"$TMP/serve.log" 2>&1 &
    SERVE=$!
    PIDS+=("$SERVE")
    url="http://$HOST:$PORT"
    wait_http "$url/healthz" "$SERVE" "$TMP/serve.log" 30 200
    login() { # transport -> the response headers and body
        curl -s -D - --max-time 10 -H 'content-type: application/json' \
            -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\",\"transport\":\"$1\"}" "$url/auth/login"
    }
    cookie=$(login cookie | tr -d '\r' |
        sed -n 's/^[Ss]et-[Cc]ookie: \(vestibule_session=[^;]*\).*/\1/p' | head -1)
    token=$(login bearer | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    [ -n "$cookie" ] && [ -n "$token" ] || die "login failed: $(tail -c 600 "$TMP/serve.log")"
    wrk_load "$url/auth/me" "Cookie: $cookie"
    wrk_load "$url/auth/me" "Authorization: Bearer $token"
    wrk_load "$url/healthz"
    wrk_load "$url/api/json"
    # The paths a session's life takes besides reading: logins (a few, each an Argon2 hash),
    # signups, the account's pages, a token, a password change, refusals, a CSRF-checked write,
    # logout. Code the training never runs is compiled as cold (for size), so the rest of the
    # API is visited too, a few times each; its answers, refusals included, are not checked.
    for _ in 1 2 3 4 5; do login cookie >/dev/null; done
    hit() { # times method path [json body]: with the bearer token
        local i
        for i in $(seq 1 "$1"); do
            curl -s -o /dev/null --max-time 10 -X "$2" -H "Authorization: Bearer $token" \
                ${4:+-H 'content-type: application/json' -d "$4"} "$url$3" || true
        done
    }
    for i in 1 2 3; do
        curl -s -o /dev/null --max-time 10 -H 'content-type: application/json' \
            -d "{\"username\":\"train$i\",\"password\":\"$PASSWORD\"}" "$url/auth/signup"
    done
    for path in /auth/csrf /auth/sessions /auth/tokens /auth/mfa /auth/passkeys /auth/identities \
        /auth/oidc/providers /metrics /readyz /no-such-path /api/no-such-path; do
        hit 50 GET "$path"
    done
    hit 3 POST /auth/tokens '{"name":"training","expires_in_days":1}'
    hit 2 POST /auth/reauth "{\"password\":\"$PASSWORD\"}"
    hit 2 POST /auth/password "{\"current_password\":\"wrong-$PASSWORD\",\"new_password\":\"x\"}"
    hit 20 POST /auth/login '{"username":'
    curl -s -o /dev/null --max-time 10 -H 'content-type: application/json' \
        -d "{\"username\":\"bench\",\"password\":\"wrong-$PASSWORD\"}" "$url/auth/login"
    for _ in $(seq 1 50); do
        curl -s -o /dev/null --max-time 5 -H "Authorization: Bearer not-a-token" "$url/auth/me"
        curl -s -o /dev/null --max-time 5 -H "Cookie: vestibule_session=not-a-session" "$url/auth/me"
        curl -s -o /dev/null --max-time 5 -X OPTIONS -H "origin: http://localhost:3000" \
            -H "access-control-request-method: POST" "$url/auth/login"
    done
    csrf=$(curl -s --max-time 5 -H "Cookie: $cookie" "$url/auth/me" |
        sed -n 's/.*"csrf_token":"\([^"]*\)".*/\1/p')
    curl -s -o /dev/null --max-time 5 -X POST -H "Cookie: $cookie" -H "x-csrf-token: $csrf" \
        -H "origin: $url" "$url/auth/logout"
    kill -TERM "$SERVE"
    for _ in $(seq 1 100); do kill -0 "$SERVE" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVE" 2>/dev/null && die "the server did not stop on SIGTERM: no profile written"
    ls "$PGO_DIR"/raw/serve-*.profraw >/dev/null 2>&1 || die "the server wrote no profile"

    log "3/4 merging $(find "$PGO_DIR/raw" -name '*.profraw' | wc -l) profiles with $PROFDATA"
    "$PROFDATA" merge -o "$PGO_DIR/merged.profdata" "$PGO_DIR/raw"
fi
[ -s "$PGO_DIR/merged.profdata" ] || die "no $PGO_DIR/merged.profdata"

log "4/4 the release build with the profile into $USE_TARGET"
RUSTFLAGS="-Cprofile-use=$PGO_DIR/merged.profdata" CARGO_TARGET_DIR="$USE_TARGET" \
    cargo build --release -q -p vestibule-cli
log "wrote $USE_TARGET/release/vestibule"
