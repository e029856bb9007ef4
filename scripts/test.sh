#!/usr/bin/env bash
# The README's test command: the Rust suite, then the JavaScript client (type check + node tests
# against the real binary), the React example (type check + build), then schemathesis against /openapi.json (installed from PyPI into
# target/), then the browser end-to-end suite in Debian's Chromium.
# Without /usr/bin/chromium the browser suite is skipped with a message, except under CI
# (CI set), where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# The email tests talk to a real SMTP server on loopback: aiosmtpd from PyPI, in a venv in
# target/ (crates/vestibule/tests/it/smtp_sink.py runs on its python).
AIOSMTPD_VERSION=1.4.6
smtp_venv="$PWD/target/aiosmtpd-venv"
smtp_pkgs="$PWD/target/aiosmtpd-pkgs"
if "$smtp_venv/bin/python" -m pip show aiosmtpd 2>/dev/null | grep -qx "Version: $AIOSMTPD_VERSION"; then
  export VESTIBULE_TEST_SMTP_PYTHON="$smtp_venv/bin/python"
elif [ -f "$smtp_pkgs/.version" ] && [ "$(cat "$smtp_pkgs/.version")" = "$AIOSMTPD_VERSION" ]; then
  export VESTIBULE_TEST_SMTP_PYTHON="$smtp_pkgs/python"
elif python3 -m venv "$smtp_venv" >/dev/null 2>&1 && [ -x "$smtp_venv/bin/python" ]; then
  echo "== installing aiosmtpd $AIOSMTPD_VERSION into $smtp_venv"
  "$smtp_venv/bin/python" -m pip install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
  export VESTIBULE_TEST_SMTP_PYTHON="$smtp_venv/bin/python"
else
  # No venv module (Debian without python3-venv): a plain `pip install --target` directory and
  # a small launcher that puts it on PYTHONPATH.
  echo "== installing aiosmtpd $AIOSMTPD_VERSION into $smtp_pkgs"
  rm -rf "$smtp_pkgs"
  python3 -m pip install --quiet --disable-pip-version-check --target "$smtp_pkgs" "aiosmtpd==$AIOSMTPD_VERSION"
  printf '#!/bin/sh\nPYTHONPATH="%s" exec python3 "$@"\n' "$smtp_pkgs" >"$smtp_pkgs/python"
  chmod +x "$smtp_pkgs/python"
  echo "$AIOSMTPD_VERSION" >"$smtp_pkgs/.version"
  export VESTIBULE_TEST_SMTP_PYTHON="$smtp_pkgs/python"
fi

# npm first: the Rust suite's OpenID tests start `oidc-provider` (a real, certified provider) from
# node_modules (crates/vestibule/tests/it/oidc.rs, e2e/oidc/provider.mjs).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are needed for the JavaScript tests (Node 20 or later)" >&2
  exit 1
fi

# npm ci when node_modules is missing or was installed from another package-lock.json.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp=node_modules/.vestibule-lock.sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_sum" >"$stamp"
fi

echo "== cargo test --workspace"
cargo test --workspace

# `cargo test` has just built target/debug/vestibule for the CLI tests; the JavaScript and browser
# tests run that same binary (a separate `cargo build` would compile everything a second time
# with other features).
export TEST_VESTIBULE_BIN="$PWD/target/debug/vestibule"
if [ ! -x "$TEST_VESTIBULE_BIN" ]; then
  echo "$TEST_VESTIBULE_BIN is missing after cargo test" >&2
  exit 1
fi
# Likewise examples/notes-api's binary (built for its integration tests), used by the browser tests.
export TEST_NOTES_API_BIN="$PWD/target/debug/notes-api"
if [ ! -x "$TEST_NOTES_API_BIN" ]; then
  echo "$TEST_NOTES_API_BIN is missing after cargo test" >&2
  exit 1
fi

echo "== tsc --noEmit (clients/js: index.d.ts, index.js against it, typed usage)"
node_modules/.bin/tsc -p clients/js/tsconfig.json

echo "== npm pack --dry-run (clients/js): what npm would publish"
node scripts/check-pack.mjs

echo "== node tests of the JavaScript client"
node --test --test-timeout=60000 clients/js/test/*.test.js

# The React example has its own package-lock.json: same stamp idea as above.
spa=examples/react-spa
spa_sum="$(sha256sum "$spa/package-lock.json" | cut -d' ' -f1)"
spa_stamp="$spa/node_modules/.vestibule-lock.sha256"
if [ ! -f "$spa_stamp" ] || [ "$(cat "$spa_stamp")" != "$spa_sum" ]; then
  echo "== npm ci ($spa)"
  (cd "$spa" && npm ci --no-audit --no-fund)
  echo "$spa_sum" >"$spa_stamp"
fi
echo "== $spa: tsc --noEmit and vite build (the build is what the gateway browser test serves)"
(cd "$spa" && npm run --silent typecheck && npm run --silent build -- --logLevel warn)
export REACT_SPA_DIST="$PWD/$spa/dist"

echo "== schemathesis: property-based test of the API against /openapi.json"
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 (with venv and pip) is needed for the schemathesis API test" >&2
  exit 1
fi
bash scripts/schemathesis.sh

echo "== browser end-to-end tests"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ -n "${CI:-}" ]; then
    echo "FAIL: $chromium is missing and CI is set: the browser suite must run in CI (.ci/run installs it)" >&2
    exit 1
  fi
  echo "SKIPPED: $chromium is missing; install it with: apt-get install -y --no-install-recommends chromium"
  exit 0
fi
export CHROMIUM="$chromium"
node --test --test-concurrency=1 --test-timeout=120000 e2e/*.test.js

echo "== vestibule doctor cross-checked in Chromium (each scenario must end as the doctor predicts)"
node e2e/doctor/run.mjs
