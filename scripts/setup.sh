#!/usr/bin/env bash
# Installs what is missing for audioloop on Debian: the sound server and its
# tools, the PipeWire headers, then the npm dependencies, and builds the
# native addon and the TypeScript. Safe to run again: it only installs what
# is missing and only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(pipewire pipewire-pulse wireplumber pipewire-bin libpipewire-0.3-dev pulseaudio-utils pulseaudio dbus sox ffmpeg
      pkg-config make gcc g++ python3 libpulse-dev
      libasound2-dev alsa-utils alsa-oss libsox-fmt-oss python3-pyaudio
      gstreamer1.0-tools gstreamer1.0-pulseaudio gstreamer1.0-pipewire gstreamer1.0-plugins-base gstreamer1.0-plugins-good)

missing=()
for p in "${DEBS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# the addon and the PulseAudio module (binding.gyp) are missing or older than their sources
native_stale() {
  local m
  for m in build/Release/audioloop_native.node build/Release/audioloop_pulse.node; do
    [[ -f $m && -z "$(find native -newer "$m" -print -quit)" && ! binding.gyp -nt $m ]] || return 0
  done
  return 1
}

if [[ -L node_modules ]]; then
  # a shared install (a git worktree's link to another checkout's modules):
  # `npm ci` here would empty the linked directory for every tree using it
  echo "setup: node_modules is a link to $(readlink node_modules); not reinstalling through it" >&2
  if native_stale; then
    npm run --silent build:native >&2
  fi
elif [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm dependencies (builds the native addon)" >&2
  # @discordjs/opus would first try to download a prebuilt binary, which this
  # network refuses only after minutes of retries: build it from source at once
  npm_config_build_from_source=true npm ci --no-audit --no-fund >&2
elif native_stale; then
  echo "setup: building the native addon" >&2
  npm run --silent build:native >&2
fi
# the server-first rule for the user's own WirePlumber (a client naming a loop
# with no server is ended, never played to the default device); undo with
# scripts/wireplumber-policy.sh uninstall. AUDIOLOOP_NO_WIREPLUMBER_RULE=1 skips it.
if [[ "${AUDIOLOOP_NO_WIREPLUMBER_RULE:-}" != 1 ]]; then
  bash scripts/wireplumber-policy.sh install
fi
# test/tools/pacork: a libpulse client that really corks, for the session tests
if [[ ! -x dist/tools/pacork || test/tools/pacork.c -nt dist/tools/pacork ]]; then
  echo "setup: building test/tools/pacork" >&2
  mkdir -p dist/tools
  cc -O2 -Wall -o dist/tools/pacork test/tools/pacork.c $(pkg-config --cflags --libs libpulse)
fi
# test/tools/pwstall: a PipeWire recorder slow to take its Start, for the start-gating test
if [[ ! -x dist/tools/pwstall || test/tools/pwstall.c -nt dist/tools/pwstall ]]; then
  echo "setup: building test/tools/pwstall" >&2
  mkdir -p dist/tools
  cc -O2 -Wall -o dist/tools/pwstall test/tools/pwstall.c $(pkg-config --cflags --libs libpipewire-0.3)
fi
echo "setup: compiling TypeScript" >&2
npm run --silent build:ts >&2
echo "setup: building the ALSA plugin (alsa/)" >&2
make -s -C alsa >&2
# the audioloop ALSA PCM for this user (or system-wide as root), so that
# `arecord -D audioloop:N` works right away; AUDIOLOOP_NO_ALSA_INSTALL=1 skips it
if [[ -z ${AUDIOLOOP_NO_ALSA_INSTALL:-} ]]; then
  bash scripts/install-alsa.sh
fi
