#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, starts a private
# headless sound server (never the user's own), runs mocha, stops it; then
# the same again on a private real PulseAudio for the suites written for
# both sound servers (.mocharc.pulseaudio.json: the backend contract, ...),
# with AUDIOLOOP_TEST_SOUNDSERVER=pulseaudio.
# Extra arguments go to mocha (e.g. --grep loop).
# TEST_SOUNDSERVERS="pipewire" (or "pulseaudio") runs one pass only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

passes=${TEST_SOUNDSERVERS:-pipewire pulseaudio}
rt=""
cleanup() {
  if [[ -n "$rt" ]]; then
    bash scripts/soundserver.sh stop "$rt" || true
    rm -rf "$rt"
  fi
  rt=""
}
trap cleanup EXIT

status=0
for kind in $passes; do
  rt=$(mktemp -d "${TMPDIR:-/tmp}/audioloop-test-XXXXXX")
  t0=$SECONDS
  if [[ "$kind" == pulseaudio ]]; then
    eval "$(bash scripts/soundserver.sh start-pulse "$rt")"
    unset PIPEWIRE_REMOTE
    config=(--config .mocharc.pulseaudio.json)
  else
    eval "$(bash scripts/soundserver.sh start "$rt")"
    config=()
  fi
  echo "test: $kind pass, private sound server in $rt ($(pactl info | grep 'Server Name'))" >&2
  set +e
  AUDIOLOOP_TEST_SOUNDSERVER=$kind npx --no-install mocha "${config[@]}" "$@"
  rc=$?
  set -e
  echo "test: $kind pass: mocha exit $rc after $((SECONDS - t0)) s" >&2
  if [[ $rc -ne 0 ]]; then
    echo "test: mocha failed ($rc) on $kind; sound server logs:" >&2
    tail -n 20 "$rt"/log/*.log >&2 || true
    status=$rc
  fi
  cleanup
done
exit $status
