#!/usr/bin/env bash
# Where a request's cost goes, job by job, measured natively: the same source built once more
# with bench/ablation.patch, which adds a VESTIBULE_ABLATE switch (a comma-separated list, read
# at start-up) that takes one of the request path's jobs away; each variant runs as its own
# server, interleaved round by round with the stack's floor (bench/baseline `peerfull`, which
# hashes the token, derives the CSRF token and sets the request id and security headers, on
# `axum::serve` with no timers). Instruction counts (callgrind) say how much code a job runs;
# this says what it costs in CPU time on this machine, caches and clock reads included, which is
# where the bearer path's wall-clock gap lives (bench/RESULTS.md, issue 20).
#
#   bash bench/ablate.sh                  # GET /auth/me with a bearer token
#   MODE=me bash bench/ablate.sh          # with the session cookie
#
# The switches (bench/ablation.patch; never in a shipped binary):
#   front      the front service (request id, size limits, body clock, metrics, security headers)
#   id, limits, headers, span    one job of the front each
#   cors       the CORS layer          bodylimit  axum's DefaultBodyLimit
#   csrf       the CSRF layer          timer      hyper's header-read timeout (and its timer)
#   drive      the connection task's idle and shutdown watch (the connection is awaited alone)
#   and VESTIBULE_METRICS__ENABLED=false, the product's own setting, for metrics.
# Sessions, the router, the extractors and the handler cannot be taken away: they are the job.
#
# CPU per request is the server's utime and stime from /proc/PID/stat (100 Hz ticks) around each
# wrk run, over the requests wrk counted; the server saturates its core, so user time is the
# server's own code and sys time the kernel's loopback TCP and epoll (the same for every variant
# whose response is the same size). Read user time; req/s moves with the host.
#
# Knobs: MODE (bearer | me), VARIANTS (space-separated `name` or `name=ENV=VALUE;ENV=VALUE`;
# a name that starts with `floor` is the peerfull floor (BASE_BIN, bench/baseline's release
# build); default: floor, all on, each switch alone, all off;
# `BENCH_BIN=path` among a variant's settings runs that binary instead, say an earlier commit's
# release build beside this one: `VARIANTS="floor on before=BENCH_BIN=/tmp/vestibule-before"`,
# or, for a floor, another build of it: `floorpgo=BENCH_BIN=bench/baseline/target/pgo/...`),
# ROUNDS (5), DURATION (s, 6), CONNS (32), SERVER_CPUS (0), WRK_CPUS (1), CALLGRIND (1 = also
# count instructions per request of each variant with bench/profile.sh), ABL_TARGET (the
# ablation build's cargo target dir, default target/ablation: the first build compiles every
# dependency, 8 min on a quiet host here), SKIP_BUILD=1 (reuse the binary built there, or
# ABL_BIN), OUT (default bench/results/ablation[-me].txt). Loopback only; every run is bounded.
set -euo pipefail
export LC_ALL=C
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODE="${MODE:-bearer}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-6}"
CONNS="${CONNS:-32}"
SERVER_CPUS="${SERVER_CPUS:-0}"
WRK_CPUS="${WRK_CPUS:-1}"
ABL_TARGET="${ABL_TARGET:-$ROOT/target/ablation}"
ABL_BIN="${ABL_BIN:-$ABL_TARGET/release/vestibule}"
BASE_BIN="${BASE_BIN:-$ROOT/bench/baseline/target/release/bench-baseline}"
HOST=127.0.0.1 # loopback only
PORT0=18620
PASSWORD='quiet-harbour-lantern-42'
case "$MODE" in
bearer) OUT="${OUT:-$ROOT/bench/results/ablation.txt}" ;;
me) OUT="${OUT:-$ROOT/bench/results/ablation-me.txt}" ;;
*) echo "MODE is bearer or me" >&2 && exit 2 ;;
esac
DEFAULT_VARIANTS="floor on front=VESTIBULE_ABLATE=front id=VESTIBULE_ABLATE=id
limits=VESTIBULE_ABLATE=limits headers=VESTIBULE_ABLATE=headers span=VESTIBULE_ABLATE=span
metrics=VESTIBULE_METRICS__ENABLED=false cors=VESTIBULE_ABLATE=cors
bodylimit=VESTIBULE_ABLATE=bodylimit csrf=VESTIBULE_ABLATE=csrf timer=VESTIBULE_ABLATE=timer
drive=VESTIBULE_ABLATE=drive
none=VESTIBULE_ABLATE=front,cors,bodylimit,csrf,timer,drive;VESTIBULE_METRICS__ENABLED=false"
VARIANTS="${VARIANTS:-$DEFAULT_VARIANTS}"
BENCH_NAME=ablate
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

missing=()
for tool in wrk curl taskset git; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    apt_install "${missing[@]/taskset/util-linux}" >&2
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # The patched source is a copy of HEAD's tree (uncommitted changes are not measured).
    log "building the ablation binary (HEAD + bench/ablation.patch) into $ABL_TARGET"
    mkdir -p "$TMP/src"
    git archive --format=tar HEAD | tar -x -C "$TMP/src" -f - || die "git archive failed"
    (cd "$TMP/src" && git apply --check "$ROOT/bench/ablation.patch" 2>&1 &&
        git apply "$ROOT/bench/ablation.patch") >&2 ||
        die "bench/ablation.patch no longer applies to HEAD: refresh it (see its header)"
    (cd "$TMP/src" && CARGO_TARGET_DIR="$ABL_TARGET" cargo build --release -q -p vestibule-cli) ||
        die "the ablation build failed"
    cargo build --release -q --manifest-path "$ROOT/bench/baseline/Cargo.toml"
fi
[ -x "$ABL_BIN" ] || die "no $ABL_BIN (SKIP_BUILD=1 needs ABL_BIN)"
[ -x "$BASE_BIN" ] || die "no $BASE_BIN"

declare -A PORT PID_OF HDR ENVS BIN_OF
NAMES=()
n=0
for v in $VARIANTS; do
    name=${v%%=*}
    envs=""
    [ "$name" != "$v" ] && envs=${v#*=}
    NAMES+=("$name")
    PORT[$name]=$((PORT0 + n))
    ENVS[$name]=$envs
    n=$((n + 1))
done

# Starts variant $1 and logs in (HDR: wrk's credential header).
start() {
    local t=$1 port=${PORT[$1]} url="http://$HOST:${PORT[$1]}" envs=() body cookie bin=$ABL_BIN e
    IFS=';' read -r -a envs <<<"${ENVS[$t]}"
    for e in "${envs[@]+"${envs[@]}"}"; do
        case "$e" in BENCH_BIN=*) bin=${e#BENCH_BIN=} ;; esac
    done
    [ -x "$bin" ] || die "$t: no binary at $bin"
    BIN_OF[$t]=$bin
    if [ "${t#floor}" != "$t" ]; then
        [ "$bin" = "$ABL_BIN" ] && bin=$BASE_BIN
        BIN_OF[$t]=$bin
        taskset -c "$SERVER_CPUS" env TOKIO_WORKER_THREADS=1 "$bin" "$HOST:$port" peerfull \
            >"$TMP/$t.log" 2>&1 &
    else
        (cd "$TMP" && printf '%s\n' "$PASSWORD" | "$bin" --database "$TMP/$t.db" user add bench \
            --password-stdin) >/dev/null 2>&1 || die "user add failed"
        (cd "$TMP" && exec taskset -c "$SERVER_CPUS" env TOKIO_WORKER_THREADS=1 VESTIBULE_LOG=warn \
            "${envs[@]+"${envs[@]}"}" "$bin" --database "$TMP/$t.db" serve --listen "$HOST:$port") \
            >"$TMP/$t.log" 2>&1 &
    fi
    PID_OF[$t]=$!
    PIDS+=("${PID_OF[$t]}")
    wait_http "$url/auth/me" "${PID_OF[$t]}" "$TMP/$t.log" 30
    case "$t:$MODE" in
    floor*:bearer)
        body=$(curl -s --max-time 10 -X POST "$url/auth/login")
        HDR[$t]="Authorization: Bearer $(printf '%s' "$body" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
        ;;
    floor*:me)
        curl -s -c "$TMP/$t.jar" --max-time 10 -X POST "$url/auth/login" >/dev/null
        cookie=$(awk '$6 == "id" { print $6 "=" $7 }' "$TMP/$t.jar" | head -1)
        HDR[$t]="Cookie: $cookie"
        ;;
    *:bearer)
        body=$(curl -s --max-time 10 -H 'content-type: application/json' \
            -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\",\"transport\":\"bearer\"}" "$url/auth/login")
        HDR[$t]="Authorization: Bearer $(printf '%s' "$body" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
        ;;
    *:me)
        cookie=$(curl -s -D - -o /dev/null --max-time 10 -H 'content-type: application/json' \
            -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" "$url/auth/login" | tr -d '\r' |
            sed -n 's/^[Ss]et-[Cc]ookie: \(vestibule_session=[^;]*\).*/\1/p' | head -1)
        HDR[$t]="Cookie: $cookie"
        ;;
    esac
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "${HDR[$t]}" "$url/auth/me")
    [ "$code" = 200 ] || die "$t: /auth/me answered $code with its credential: $(tail -c 600 "$TMP/$t.log")"
}

for t in "${NAMES[@]}"; do
    log "starting $t on port ${PORT[$t]} ${ENVS[$t]}"
    start "$t"
done

ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }
# One bounded wrk run on variant $1; appends "round name req/s requests user_ticks sys_ticks".
run() { # name round duration
    local t=$1 r=$2 d=$3 u0 s0 u1 s1 out
    read -r u0 s0 < <(ticks "${PID_OF[$t]}")
    out=$(timeout $((d + 30)) taskset -c "$WRK_CPUS" wrk -t1 "-c$CONNS" "-d${d}s" --timeout 5s \
        -H "${HDR[$t]}" "http://$HOST:${PORT[$t]}/auth/me") || die "wrk on $t failed: $out"
    read -r u1 s1 < <(ticks "${PID_OF[$t]}")
    if grep -q 'Non-2xx' <<<"$out"; then die "$t: some answers were not 200"; fi
    [ "$r" = warm ] && return 0
    printf '%s %s %s %s %s %s\n' "$r" "$t" "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")" \
        "$(awk '/ requests in / { print $1 }' <<<"$out")" $((u1 - u0)) $((s1 - s0)) >>"$TMP/runs"
}
for t in "${NAMES[@]}"; do run "$t" warm 2; done
for r in $(seq 1 "$ROUNDS"); do
    rot=$(((r - 1) % ${#NAMES[@]}))
    for t in "${NAMES[@]:$rot}" "${NAMES[@]:0:$rot}"; do
        log "round $r: $t"
        run "$t" "$r" "$DURATION"
    done
done

declare -A INSTR
if [ "${CALLGRIND:-0}" = 1 ]; then
    for t in "${NAMES[@]}"; do
        envs=()
        IFS=';' read -r -a envs <<<"${ENVS[$t]}"
        # The floor is profile.sh's own scenario for it: peerfullbearer, or peerfull for `me`.
        scenario=$MODE
        [ "${t#floor}" != "$t" ] && scenario="peerfull${MODE/me/}"
        log "callgrind: $t"
        mkdir -p "$TMP/cg-$t"
        env "${envs[@]+"${envs[@]}"}" SKIP_BUILD=1 SCENARIOS="$scenario" VEST_BIN="${BIN_OF[$t]:-$ABL_BIN}" \
            BASE_BIN="${BIN_OF[$t]}" RESULTS_DIR="$TMP/cg-$t" bash "$ROOT/bench/profile.sh" >"$TMP/cg-$t.log" 2>&1 ||
            die "profile.sh failed for $t: $(tail -5 "$TMP/cg-$t.log")"
        INSTR[$t]=$(awk -v m="$scenario" '$1 == m { print $2 }' "$TMP/cg-$t/profile.txt")
    done
fi

mkdir -p "$(dirname "$OUT")"
{
    echo "# bench/ablate.sh: GET /auth/me ($MODE), one job of the request path taken away per variant"
    echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if [ "$ABL_BIN" = "$ABL_TARGET/release/vestibule" ]; then
        echo "git:    $(git rev-parse --short HEAD) + bench/ablation.patch"
    else
        echo "git:    HEAD is $(git rev-parse --short HEAD); the variants run $ABL_BIN, which this script did not build"
    fi
    echo "host:   $(nproc) CPUs, load before $LOAD_START; server on CPU $SERVER_CPUS (one runtime thread), wrk -t1 -c$CONNS on CPU $WRK_CPUS"
    echo "plan:   $ROUNDS rounds x ${DURATION} s per variant, order rotated per round; medians over rounds"
    for t in "${NAMES[@]}"; do
        if [ "${t#floor}" = "$t" ] && [ "${BIN_OF[$t]}" != "$ABL_BIN" ]; then
            echo "binary: $t runs ${BIN_OF[$t]} (the others $ABL_BIN)"
        elif [ "${t#floor}" != "$t" ] && [ "${BIN_OF[$t]}" != "$BASE_BIN" ]; then
            echo "binary: $t runs ${BIN_OF[$t]} (the floor $BASE_BIN)"
        fi
    done
    echo
    echo "CPU per request (µs): user = the server's own code, sys = the kernel; saved = user time"
    echo "of 'on' minus this variant's (what the job taken away costs)."
    echo
    python3 - "$TMP/runs" "${NAMES[*]}" "$(for t in "${NAMES[@]}"; do printf '%s=%s;' "$t" "${INSTR[$t]:-}"; done)" <<'EOF'
import statistics as st, sys
runs, names, instr = sys.argv[1], sys.argv[2].split(), dict(
    kv.split("=", 1) for kv in sys.argv[3].split(";") if kv)
rows = {n: [] for n in names}
for line in open(runs):
    r, n, rps, reqs, u, s = line.split()
    rows[n].append((float(rps), int(reqs), int(u), int(s)))
def med(n, i):
    # ticks are 10 ms: µs per request = ticks * 1e4 / requests
    return st.median(x[i] * 1e4 / x[1] for x in rows[n])
on = med("on", 2) if "on" in rows and rows["on"] else None
print(f"{'variant':10s} {'req/s':>8s} {'range':>15s} {'user':>6s} {'sys':>6s} {'saved':>6s} {'instructions':>13s}")
for n in names:
    xs = rows[n]
    if not xs:
        continue
    rps = [x[0] for x in xs]
    user = med(n, 2)
    saved = f"{on - user:+.2f}" if on is not None and n != "on" and not n.startswith("floor") else ""
    print(f"{n:10s} {st.median(rps)/1000:7.1f}k {min(rps)/1000:6.1f}-{max(rps)/1000:5.1f}k "
          f"{user:6.2f} {med(n, 3):6.2f} {saved:>6s} {instr.get(n, ''):>13s}")
EOF
} | tee "$OUT.new" >&2
mv "$OUT.new" "$OUT"
log "wrote $OUT"
