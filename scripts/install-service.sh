#!/usr/bin/env bash
# Installs the audioloop daemon as a systemd *user* service for this checkout.
#
#   scripts/install-service.sh           build, write ~/.config/systemd/user/audioloop.service,
#                                        install the example config (see --install-config),
#                                        enable and start it (needs a systemd user session)
#   scripts/install-service.sh --print   only print the unit this checkout would install
#   scripts/install-service.sh --install-config
#                                        only copy conf/audioloop.conf to
#                                        ~/.config/audioloop/audioloop.conf ($XDG_CONFIG_HOME),
#                                        unless that or /etc/audioloop/audioloop.conf exists
#   scripts/install-service.sh --remove  stop, disable and remove it (the config stays)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
node=$(command -v node)
# the daemon's config search (src/config.ts configSearchPath), after -c
xdg=${XDG_CONFIG_HOME:-}
[[ $xdg == /* ]] || xdg=$HOME/.config
user_conf=$xdg/audioloop/audioloop.conf
system_conf=${AUDIOLOOP_SYSCONFDIR:-/etc}/audioloop/audioloop.conf
unit_dir=$xdg/systemd/user
install_config() {
  if [[ -e $user_conf ]]; then echo "config: $user_conf (kept)"; return; fi
  if [[ -e $system_conf ]]; then echo "config: $system_conf (kept)"; return; fi
  mkdir -p "$(dirname "$user_conf")"
  cp "$root/conf/audioloop.conf" "$user_conf"
  echo "config: installed the example as $user_conf"
}
render() { sed -e "s#@ROOT@#$root#g" -e "s#@NODE@#$node#g" "$root/conf/audioloop.service"; }

case "${1:-}" in
  --print) render; exit 0 ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --install-config) install_config; exit 0 ;;
  --remove)
    systemctl --user disable --now audioloop.service 2>/dev/null || true
    rm -f "$unit_dir/audioloop.service"
    systemctl --user daemon-reload 2>/dev/null || true
    echo "removed $unit_dir/audioloop.service"; exit 0 ;;
  "") ;;
  *) echo "install-service: unknown option '$1' (see --help)" >&2; exit 2 ;;
esac

bash "$root/scripts/setup.sh"
mkdir -p "$unit_dir"
render > "$unit_dir/audioloop.service"
echo "wrote $unit_dir/audioloop.service"
install_config
if systemctl --user show-environment >/dev/null 2>&1; then
  systemctl --user daemon-reload
  systemctl --user enable --now audioloop.service
  systemctl --user --no-pager status audioloop.service || true
else
  echo "no systemd user session here: start it later with 'systemctl --user enable --now audioloop.service'" >&2
fi
