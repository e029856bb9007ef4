# Shared by the bench scripts (sourced, never run): logging, the temp dir and the processes a
# script starts (every one recorded by PID and killed on exit, including errors and Ctrl-C),
# Debian installs, waiting for a server, and the nginx proxy configuration both proxy.sh and
# profile.sh measure against.
#
#   BENCH_NAME=proxy-bench source "$ROOT/bench/lib.sh"
#
# Defines: log, die, PIDS (append every background PID), TMP (removed on exit), apt_install,
# wait_http URL PID LOGFILE [SECONDS] [any|200], nginx_proxy_conf DIR LISTEN UPSTREAM [extra
# main-context lines]; the wrk-output readers to_ms, rps, pct, median, spread, div.

log() { printf '[%s] %s\n' "${BENCH_NAME:-bench}" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

PIDS=()
TMP="$(mktemp -d -t "vestibule-${BENCH_NAME:-bench}.XXXXXX")"
bench_cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        # Bounded wait (valgrind takes its time to write its counts), then force.
        for _ in $(seq 1 25); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
    local apt_opts=(-y -q -o DPkg::Lock::Timeout=300) sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "need root or sudo to install $*"
        sudo=(sudo)
    fi
    "${sudo[@]+"${sudo[@]}"}" apt-get update -qq -o DPkg::Lock::Timeout=300
    "${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$@"
}

# Waits (bounded: SECONDS, default 20) until URL answers at all (`any`, the default) or with 200;
# dies with the end of LOGFILE if the server exits first or never answers.
wait_http() {
    local url="$1" pid="$2" logfile="$3" secs="${4:-20}" want="${5:-any}" code
    for _ in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || die "server for $url exited early: $(tail -c 800 "$logfile")"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        if [ "$want" = 200 ] && [ "$code" = 200 ]; then return 0; fi
        if [ "$want" = any ] && [ -n "$code" ] && [ "$code" != 000 ]; then return 0; fi
        sleep 0.1
    done
    local what=""
    [ "$want" = 200 ] && what=" 200"
    die "$url did not answer$what within $secs s: $(tail -c 800 "$logfile")"
}

# Writes DIR/nginx.conf: one worker, `location /api/ { proxy_pass }` to UPSTREAM (host:port) with
# kept-alive HTTP/1.1 and the same X-Forwarded-* / Forwarded headers Vestibule sets, so both do
# the same work per request; its pid file, logs and temp dirs under DIR. Lines in $4 go into the
# main context (e.g. "master_process off;" for valgrind, or a worker count).
nginx_proxy_conf() {
    local dir="$1" listen="$2" upstream="$3" extra="${4:-worker_processes 1;}"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
$extra
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
$( [ "$(id -u)" -eq 0 ] && echo "user root;" )
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    upstream bench_up {
        server $upstream;
        keepalive 64;
    }
    server {
        listen $listen;
        location /api/ {
            proxy_pass http://bench_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header Forwarded "for=\$remote_addr;host=\"\$host\";proto=\$scheme";
        }
    }
}
EOF
}

# --- wrk output (the files are $TMP/wrk-NAME.txt, written with --latency) ---------------------
# to_ms VALUE: wrk's "812.00us" / "1.20ms" / "2.00s" in milliseconds; rps NAME; pct NAME P (the
# P-th percentile in ms); median / spread (min-max) of numbers, skipping "?"; div A B [SCALE].
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u);
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1;
        if (f < 0) { print "?"; exit }
        printf "%.3f", n * f }'
}
rps() { awk '/^Requests\/sec:/ { print $2 }' "$TMP/wrk-$1.txt"; }
pct() {
    local raw
    raw=$(awk -v p="$2%" '$1 == p && NF == 2 { print $2; exit }' "$TMP/wrk-$1.txt")
    [ -n "$raw" ] && to_ms "$raw" || echo "?"
}
median() {
    printf '%s\n' "$@" | grep -v '^?$' | sort -g | awk '{ v[NR] = $1 }
        END { if (!NR) { print "?"; exit }
              m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'
}
spread() { # min-max of the arguments
    printf '%s\n' "$@" | grep -v '^?$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
        END { if (!NR) print "?"; else printf "%s-%s", lo, hi }'
}
div() { awk -v a="$1" -v b="$2" -v s="${3:-1}" 'BEGIN { if (b > 0) printf "%.2f", s * a / b; else print "?" }'; }
