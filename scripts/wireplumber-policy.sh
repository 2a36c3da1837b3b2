#!/usr/bin/env bash
# Installs audioloop's WirePlumber rule (conf/wireplumber/): a stream that
# names a loop (audioloopN) while no server holds it is ended, never linked
# to the default device (the OSS "server first" order for clients).
#
#   scripts/wireplumber-policy.sh install [CONFIG_HOME]    copy the rule in
#   scripts/wireplumber-policy.sh uninstall [CONFIG_HOME]  remove it again
#   scripts/wireplumber-policy.sh status [CONFIG_HOME]     installed or not
#
# CONFIG_HOME defaults to ${XDG_CONFIG_HOME:-$HOME/.config}; the files go to
# CONFIG_HOME/wireplumber/{policy.lua.d/90-audioloop.lua,scripts/audioloop-clients.lua}.
# A running WirePlumber reads them when it starts again
# (systemctl --user restart wireplumber).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
home=${2:-${XDG_CONFIG_HOME:-$HOME/.config}}
conf="$home/wireplumber/policy.lua.d/90-audioloop.lua"
script="$home/wireplumber/scripts/audioloop-clients.lua"
case "$cmd" in
  install)
    mkdir -p "$(dirname "$conf")" "$(dirname "$script")"
    changed=0
    cmp -s "$here/conf/wireplumber/90-audioloop.lua" "$conf" || changed=1
    cmp -s "$here/conf/wireplumber/audioloop-clients.lua" "$script" || changed=1
    install -m 0644 "$here/conf/wireplumber/90-audioloop.lua" "$conf"
    install -m 0644 "$here/conf/wireplumber/audioloop-clients.lua" "$script"
    if ((changed)); then echo "wireplumber-policy: installed $script (restart WirePlumber to apply)" >&2; fi
    ;;
  uninstall)
    rm -f "$conf" "$script"
    echo "wireplumber-policy: removed $conf and $script (restart WirePlumber to apply)" >&2
    ;;
  status)
    if [[ -f "$conf" && -f "$script" ]]; then echo "installed: $script"; else echo "not installed"; exit 1; fi
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [[ "$cmd" == "-h" || "$cmd" == "--help" ]] && exit 0
    exit 2 ;;
esac
