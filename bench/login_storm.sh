#!/usr/bin/env bash
# Login storm: N concurrent logins against one `vestibule serve`, per hash memory budget.
# Reports the answers (200/401/503 busy) and the process's peak RSS (VmHWM) next to its idle RSS,
# so the effect of `auth.hash_memory_budget` (19 MiB per concurrent Argon2id hash) is visible.
#
#   bash bench/login_storm.sh            # uses target/release/vestibule (built if missing)
#   VESTIBULE_BIN=target/debug/vestibule STORM=500 bash bench/login_storm.sh
#
# Loopback only; every loop is bounded; every process started here is killed by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VESTIBULE_BIN:-target/release/vestibule}
STORM=${STORM:-500}
BUDGETS=${BUDGETS:-"64MiB 256MiB 1GiB"}
PARALLELISM=${PARALLELISM:-64}
OUT=${OUT:-bench/results/login-storm.txt}
if [ ! -x "$BIN" ]; then cargo build --release -p vestibule-cli; fi
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }

TMP=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp "$TMP/codes.txt" "$TMP/server.log" /tmp/; rm -rf "$TMP"; }
trap cleanup EXIT

# Only our own settings reach the server (unknown VESTIBULE_* keys make it refuse to start).
run_env() { env -i PATH="$PATH" HOME="$HOME" VESTIBULE_LOG=warn "$@"; }

printf 'bench-tempest-phrase\n' | run_env "$BIN" --database "$TMP/storm.db" user add storm --password-stdin >/dev/null

rss_kib() { awk -v k="$2" '$1==k":" {print $2}' "/proc/$1/status"; }

{
echo "login storm: $STORM concurrent POST /auth/login (half right, half wrong password), binary $BIN"
echo "auth.hash_parallelism = $PARALLELISM; per hash 19 MiB; $(nproc) CPUs; $(date -u +%FT%TZ)"
printf '%-10s %-8s %-10s %-12s %-12s %-6s %-6s %-9s %-6s\n' budget permits idle_MiB peak_MiB growth_MiB 200 401 503busy other
echo "(other = any answer but 200, 401 or 503 busy, e.g. store_unavailable)"
} | tee "$OUT"

for budget in $BUDGETS; do
  # A fresh random port each run (other benchmarks on this machine use fixed 184xx ports).
  PORT=$((20000 + RANDOM % 20000))
  (cd "$TMP" && exec env -i PATH="$PATH" HOME="$HOME" VESTIBULE_LOG=warn \
    VESTIBULE_AUTH__HASH_MEMORY_BUDGET="$budget" VESTIBULE_AUTH__HASH_PARALLELISM="$PARALLELISM" \
    VESTIBULE_AUTH__HASH_QUEUE_TIMEOUT=2s \
    VESTIBULE_RATE_LIMITS__LOGIN_PER_IP=off VESTIBULE_RATE_LIMITS__LOGIN_PER_USER=off \
    VESTIBULE_RATE_LIMITS__LOGIN_PER_DEVICE=off \
    "$OLDPWD/$BIN" --database "$TMP/storm.db" serve --listen "127.0.0.1:$PORT" 2>"$TMP/server.log") &
  PID=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  if ! kill -0 "$PID" 2>/dev/null; then echo "the server did not start:" >&2; cat "$TMP/server.log" >&2; exit 1; fi
  # One login first so the allocator has seen a hash; then the idle figure.
  curl -sS -o /dev/null -H 'content-type: application/json' \
    -d '{"username":"storm","password":"bench-tempest-phrase"}' "http://127.0.0.1:$PORT/auth/login" || true
  sleep 0.5
  idle=$(rss_kib "$PID" VmRSS)
  rm -rf "$TMP/bodies"; mkdir "$TMP/bodies"
  seq 1 "$STORM" | xargs -P "$STORM" -I{} sh -c '
    if [ $(({} % 2)) -eq 0 ]; then pw=bench-tempest-phrase; else pw=wrong-password-guess; fi
    curl -sS --max-time 30 -o "'"$TMP"'/bodies/{}" -w "%{http_code}\n" -H "content-type: application/json" \
      -d "{\"username\":\"storm\",\"password\":\"$pw\"}" "http://127.0.0.1:'"$PORT"'/auth/login"' \
    > "$TMP/codes.txt" 2>/dev/null || true
  peak=$(rss_kib "$PID" VmHWM)
  permits=$(( $(numfmt --from=iec-i "${budget%B}") / (19 * 1024 * 1024) ))
  [ "$permits" -gt "$PARALLELISM" ] && permits=$PARALLELISM
  c() { grep -cx "$1" "$TMP/codes.txt" || true; }
  busy=$({ grep -l '"code":"busy"' "$TMP"/bodies/* 2>/dev/null || true; } | wc -l)
  other=$(( STORM - $(c 200) - $(c 401) - busy ))
  printf '%-10s %-8s %-10s %-12s %-12s %-6s %-6s %-9s %-6s\n' "$budget" "$permits" \
    $((idle / 1024)) $((peak / 1024)) $(((peak - idle) / 1024)) "$(c 200)" "$(c 401)" "$busy" "$other" | tee -a "$OUT"
  if [ "$other" -gt 0 ]; then
    echo "  other answers: $(grep -vx -e 200 -e 401 "$TMP/codes.txt" | sort | uniq -c | tr '\n' ';') codes: $(cat "$TMP"/bodies/* | { grep -o '"code":"[a-z_]*"' || true; } | sort | uniq -c | tr '\n' ';')" | tee -a "$OUT"
  fi
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
