#!/usr/bin/env bash
# Test-time system set-up (run as root by `make test` / CI, no stdin): the browser the demo UI test drives.
# Idempotent and quiet; any failure stops here with a message instead of letting the UI test skip.
set -euo pipefail

# Debian packages the suite needs: chromium (the demo UI test's browser) and espeak-ng (speech for the real-data
# binding test, tests/test_real_bind.py).
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ] || ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    # Not root (a user's machine): the browser test skips with this reason; under CI it fails instead.
    echo "tests/setup.sh: chromium or espeak-ng is missing and cannot be installed here (needs root + apt-get);" \
         "the demo UI and real-data binding tests will skip (fail under CI=true). Install Debian's chromium and" \
         "espeak-ng to run them." >&2
    [ "${CI:-}" = "true" ] && exit 1
    exit 0
  fi
  log=$(mktemp)
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium espeak-ng; } \
       </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    echo "tests/setup.sh: installing chromium failed (log above)" >&2
    exit 1
  fi
  rm -f "$log"
  [ -x "$CHROMIUM" ] || { echo "tests/setup.sh: chromium installed but $CHROMIUM is absent" >&2; exit 1; }
fi
exit 0
