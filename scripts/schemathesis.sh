#!/usr/bin/env bash
# Property-based API test: schemathesis reads GET /openapi.json from a running `vestibule serve`
# and throws generated requests at every documented operation, checking that no answer is a 5xx
# and that every status and body is the one the document declares. Bounded: few examples per
# operation and a global time limit, so it fits in CI.
#
# Needs python3 (3.9+) with venv/pip; installs schemathesis from PyPI into target/ once.
# The binary: $TEST_VESTIBULE_BIN, else target/debug/vestibule.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
# Unset: deterministic generation; a number: random generation from that seed.
SCHEMATHESIS_SEED="${SCHEMATHESIS_SEED:-}"
TIME_LIMIT="${SCHEMATHESIS_TIME_LIMIT:-300}"
BIN="${TEST_VESTIBULE_BIN:-$PWD/target/debug/vestibule}"
if [ ! -x "$BIN" ]; then
  echo "$BIN is missing: run cargo build first" >&2
  exit 1
fi

# A venv in target/; where python3 has no venv module (Debian without python3-venv), a plain
# `pip install --target` directory instead.
venv="$PWD/target/schemathesis-venv"
pkgs="$PWD/target/schemathesis-pkgs"
installed() {
  local out
  out="$("$@" -m pip show schemathesis 2>/dev/null || true)"
  grep -qx "Version: $SCHEMATHESIS_VERSION" <<<"$out"
}
if [ -x "$venv/bin/python" ] && installed "$venv/bin/python"; then
  st=("$venv/bin/python" -m schemathesis.cli)
elif [ -f "$pkgs/.version" ] && [ "$(cat "$pkgs/.version")" = "$SCHEMATHESIS_VERSION" ]; then
  st=(env "PYTHONPATH=$pkgs" python3 -m schemathesis.cli)
elif python3 -m venv "$venv" >/dev/null 2>&1 && [ -x "$venv/bin/python" ]; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION"
  st=("$venv/bin/python" -m schemathesis.cli)
else
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $pkgs (no python3 venv module)"
  rm -rf "$venv" "$pkgs"
  python3 -m pip install --quiet --disable-pip-version-check --target "$pkgs" \
    "schemathesis==$SCHEMATHESIS_VERSION"
  echo "$SCHEMATHESIS_VERSION" >"$pkgs/.version"
  st=(env "PYTHONPATH=$pkgs" python3 -m schemathesis.cli)
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/vestibule-schemathesis-XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
cat >"$dir/vestibule.toml" <<EOF
database_url = "$dir/vestibule.db"
listen = "127.0.0.1:$port"
[auth]
signup = true
EOF

# The generated requests come from one address, far faster than people: lift the rate limits.
(
  cd "$dir"
  for v in $(env | grep -o '^VESTIBULE_[A-Z0-9_]*' || true); do unset "$v"; done
  export VESTIBULE_LOG=warn
  for limit in LOGIN_PER_IP LOGIN_PER_USER LOGIN_PER_DEVICE SIGNUP_PER_IP PASSWORD_PER_USER \
    TOKEN_CREATE_PER_USER; do
    export "VESTIBULE_RATE_LIMITS__$limit=off"
  done
  exec "$BIN" serve --config "$dir/vestibule.toml"
) >"$dir/server.log" 2>&1 &
server_pid=$!

# Waits (at most 15 s) for /healthz, then signs user $1 up with transport $2 (default bearer) and
# prints the credential headers: `Authorization: Bearer …`, or `Cookie: …` and `X-CSRF-Token: …`
# on two lines.
signup() {
  python3 - "$url" "$1" "${2:-bearer}" <<'EOF'
import json, sys, time, urllib.request
url, username, transport = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 15
while True:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the server did not answer /healthz within 15 s")
    time.sleep(0.1)
body = json.dumps({"username": username, "password": "a long enough passphrase",
                   "transport": transport}).encode()
req = urllib.request.Request(url + "/auth/signup", data=body,
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    answer = json.load(r)
    if transport == "bearer":
        print("Authorization: Bearer " + answer["token"])
    else:
        cookies = [c.split(";", 1)[0] for c in r.headers.get_all("Set-Cookie") or []]
        session = [c for c in cookies if c.startswith("vestibule_session=")]
        print("Cookie: " + session[0])
        print("X-CSRF-Token: " + answer["csrf_token"])
EOF
}
bearer="$(signup schemathesis)" || { echo "server log:" >&2; cat "$dir/server.log" >&2; exit 1; }

# Operations that end or replace the caller's session (signup with a token on the request rotates
# it; logout ends it; the session listing hands out the id DELETE /auth/sessions/{id} ends) run
# in a second pass with a second user's token, so the first pass keeps a live credential.
session_enders=(--include-name "POST /auth/signup" --include-name "POST /auth/logout"
  --include-name "POST /auth/logout-all" --include-name "DELETE /auth/sessions/{id}")
excluded=("${session_enders[@]//--include-name/--exclude-name}")

# Deterministic by default (CI fails the same way twice); SCHEMATHESIS_SEED=N explores randomly.
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then
  generation=(--seed "$SCHEMATHESIS_SEED")
else
  generation=(--generation-deterministic)
fi

# Both passes share one time budget.
deadline=$((SECONDS + TIME_LIMIT))
run() {
  local left=$((deadline - SECONDS))
  if [ "$left" -le 0 ]; then
    echo "schemathesis: the ${TIME_LIMIT}s budget ran out" >&2
    return 1
  fi
  # From the temporary directory: schemathesis keeps a `.schemathesis/` cache in its working one.
  (cd "$dir" && timeout --kill-after=10 "$left" "${st[@]}" run "$url/openapi.json" \
    --checks not_a_server_error,status_code_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    "${generation[@]}" \
    --workers 1 \
    --no-color \
    "$@")
}

echo "== schemathesis $SCHEMATHESIS_VERSION against $url/openapi.json (max $MAX_EXAMPLES examples per operation, ${TIME_LIMIT}s)"
status=0
run --header "$bearer" "${excluded[@]}" || status=$?
if [ "$status" -eq 0 ]; then
  echo "== schemathesis: the same with the session cookie and its X-CSRF-Token"
  mapfile -t cookie < <(signup schemathesis-cookie cookie) || exit 1
  run --header "${cookie[0]}" --header "${cookie[1]}" "${excluded[@]}" || status=$?
fi
if [ "$status" -eq 0 ]; then
  echo "== schemathesis: the operations that end sessions, as another user"
  bearer2="$(signup schemathesis2)" || exit 1
  run --header "$bearer2" "${session_enders[@]}" || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed (exit $status); server log:" >&2
  tail -n 50 "$dir/server.log" >&2
  exit "$status"
fi
