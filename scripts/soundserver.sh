#!/usr/bin/env bash
# Start/stop a private headless sound server: a session D-Bus, pipewire,
# wireplumber and pipewire-pulse, all inside one private XDG_RUNTIME_DIR.
#
#   scripts/soundserver.sh start DIR   start it (DIR is created 0700); prints
#                                      the environment to eval on stdout
#   scripts/soundserver.sh start-pulse DIR   instead a real headless PulseAudio
#                                      (no PipeWire): a null sink "speakers" as
#                                      default sink; also `start DIR --pulseaudio`
#                                      or SOUNDSERVER=pulseaudio
#   scripts/soundserver.sh stop DIR    stop every process it started (by PID)
#   scripts/soundserver.sh env DIR     print the environment again
#
# Every process is tracked by PID in DIR/pids; nothing is ever killed by name.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" || "$cmd" == "-h" || "$cmd" == "--help" ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  [[ "$cmd" == "-h" || "$cmd" == "--help" ]] && exit 0
  exit 2
fi

print_env() {
  echo "export XDG_RUNTIME_DIR='$dir'"
  echo "export DBUS_SESSION_BUS_ADDRESS='unix:path=$dir/bus'"
  echo "export PIPEWIRE_RUNTIME_DIR='$dir'"
  echo "export PULSE_RUNTIME_PATH='$dir/pulse'"
  echo "export PULSE_SERVER='unix:$dir/pulse/native'"
}

stop_all() {
  local pidfile="$dir/pids"
  [[ -f "$pidfile" ]] || return 0
  # stop in reverse start order
  tac "$pidfile" | while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$pidfile"
}

wait_for() { # wait_for SECONDS CMD... : poll until CMD succeeds
  local limit=$1; shift
  local i
  for i in $(seq 1 $((limit * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_pulse() {
  command -v pulseaudio >/dev/null || { echo "soundserver: pulseaudio not found (run scripts/setup.sh)" >&2; exit 1; }
  mkdir -p "$dir"
  chmod 700 "$dir"
  stop_all
  mkdir -p "$dir/pulse" "$dir/log" "$dir/config" "$dir/state"
  eval "$(print_env)"
  unset PIPEWIRE_REMOTE || true
  # PulseAudio keeps its cookie and state under $HOME/.config/pulse (XDG_CONFIG_HOME):
  # a private directory, never the user's
  export XDG_CONFIG_HOME="$dir/config" XDG_STATE_HOME="$dir/state" HOME="$dir"
  : > "$dir/pids"
  # -n: no default.pa (no hardware, no autospawn, no X11 modules); only what we load.
  # Stream rescue on device removal is built into PulseAudio >= 14's core.
  pulseaudio -n --daemonize=no --exit-idle-time=-1 --use-pid-file=no --system=false \
    --disallow-exit --log-target=stderr \
    -L "module-native-protocol-unix auth-anonymous=1 socket=$dir/pulse/native" \
    -L "module-null-sink sink_name=speakers sink_properties=device.description=speakers" \
    -L "module-always-sink" \
    >"$dir/log/pulseaudio.log" 2>&1 &
  echo "pulseaudio $!" >> "$dir/pids"
  wait_for 15 pactl info || { echo "soundserver: pulseaudio did not answer, see $dir/log/pulseaudio.log" >&2; stop_all; exit 1; }
  pactl set-default-sink speakers >/dev/null 2>&1 || true
  echo pulseaudio > "$dir/kind"
  print_env
}

if [[ "$cmd" == start && ( "${3:-}" == --pulseaudio || "${SOUNDSERVER:-}" == pulseaudio ) ]]; then
  cmd=start-pulse
fi

case "$cmd" in
  start-pulse)
    start_pulse
    ;;
  start)
    for bin in dbus-daemon pipewire wireplumber pipewire-pulse pactl; do
      command -v "$bin" >/dev/null || { echo "soundserver: $bin not found (run scripts/setup.sh)" >&2; exit 1; }
    done
    mkdir -p "$dir"
    chmod 700 "$dir"
    stop_all
    mkdir -p "$dir/pulse" "$dir/log"
    eval "$(print_env)"
    unset PIPEWIRE_REMOTE || true
    # the servers read their configuration from a private directory, never
    # the user's: audioloop's WirePlumber rule and PipeWire drop-ins go there
    export XDG_CONFIG_HOME="$dir/config"
    # WirePlumber writes its state (restore-stream, default-nodes) under
    # XDG_STATE_HOME: a private one, so nothing leaks into the user's
    # ~/.local/state/wireplumber or from one run into the next
    export XDG_STATE_HOME="$dir/state"
    mkdir -p "$XDG_STATE_HOME"
    bash "$(dirname "$0")/wireplumber-policy.sh" install "$XDG_CONFIG_HOME" 2>/dev/null
    mkdir -p "$XDG_CONFIG_HOME/pipewire/pipewire.conf.d"
    install -m 0644 "$(dirname "$0")/../conf/pipewire/audioloop-rates.conf" "$XDG_CONFIG_HOME/pipewire/pipewire.conf.d/"
    : > "$dir/pids"
    dbus-daemon --session --nofork --nopidfile --address="unix:path=$dir/bus" \
      >"$dir/log/dbus.log" 2>&1 &
    echo "dbus-daemon $!" >> "$dir/pids"
    wait_for 10 test -S "$dir/bus" || { echo "soundserver: dbus-daemon did not start" >&2; stop_all; exit 1; }
    pipewire >"$dir/log/pipewire.log" 2>&1 &
    echo "pipewire $!" >> "$dir/pids"
    wait_for 10 test -S "$dir/pipewire-0" || { echo "soundserver: pipewire did not start, see $dir/log/pipewire.log" >&2; stop_all; exit 1; }
    wireplumber >"$dir/log/wireplumber.log" 2>&1 &
    echo "wireplumber $!" >> "$dir/pids"
    pipewire-pulse >"$dir/log/pipewire-pulse.log" 2>&1 &
    echo "pipewire-pulse $!" >> "$dir/pids"
    wait_for 15 pactl info || { echo "soundserver: pipewire-pulse did not answer, see $dir/log/" >&2; stop_all; exit 1; }
    # wireplumber is ready when it has published its settings/default metadata
    wait_for 15 bash -c 'pw-metadata -n default 2>/dev/null | grep -q default' || true
    echo pipewire > "$dir/kind"
    print_env
    ;;
  stop)
    stop_all
    ;;
  env)
    print_env
    ;;
  *)
    echo "soundserver: unknown command '$cmd' (start|start-pulse|stop|env)" >&2; exit 2 ;;
esac
