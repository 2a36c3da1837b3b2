#!/usr/bin/env bash
# Installs the audioloop daemon as a systemd *user* service for this checkout.
#
#   scripts/install-service.sh           build, write ~/.config/systemd/user/audioloop.service,
#                                        enable and start it (needs a systemd user session)
#   scripts/install-service.sh --print   only print the unit this checkout would install
#   scripts/install-service.sh --remove  stop, disable and remove it
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
node=$(command -v node)
unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
render() { sed -e "s#@ROOT@#$root#g" -e "s#@NODE@#$node#g" "$root/conf/audioloop.service"; }

case "${1:-}" in
  --print) render; exit 0 ;;
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
if systemctl --user show-environment >/dev/null 2>&1; then
  systemctl --user daemon-reload
  systemctl --user enable --now audioloop.service
  systemctl --user --no-pager status audioloop.service || true
else
  echo "no systemd user session here: start it later with 'systemctl --user enable --now audioloop.service'" >&2
fi
