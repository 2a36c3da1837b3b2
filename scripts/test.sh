#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, starts a private
# headless sound server (never the user's own), runs mocha, stops it.
# Extra arguments go to mocha (e.g. --grep loop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

rt=$(mktemp -d "${TMPDIR:-/tmp}/audioloop-test-XXXXXX")
cleanup() {
  bash scripts/soundserver.sh stop "$rt" || true
  rm -rf "$rt"
}
trap cleanup EXIT
eval "$(bash scripts/soundserver.sh start "$rt")"
echo "test: private sound server in $rt ($(pactl info | grep 'Server Name'))" >&2
set +e
npx --no-install mocha "$@"
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "test: mocha failed ($rc); sound server logs:" >&2
  tail -n 20 "$rt"/log/*.log >&2 || true
fi
exit $rc
