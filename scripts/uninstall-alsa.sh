#!/usr/bin/env bash
# Removes what scripts/install-alsa.sh installed: as root the plugin from
# alsa-lib's plugin dir and /etc/alsa/conf.d/60-audioloop.conf; --user (the
# default when not root) our marked block from
# ${XDG_CONFIG_HOME:-~/.config}/alsa/asoundrc (the rest stays; an empty file
# is removed). AUDIOLOOP_ALSA_PREFIX=DIR as for install-alsa.sh.
set -euo pipefail
LIB=libasound_module_pcm_audioloop.so
MARK_BEGIN='# >>> audioloop ALSA PCM (scripts/install-alsa.sh; remove with scripts/uninstall-alsa.sh) >>>'
MARK_END='# <<< audioloop ALSA PCM <<<'
mode=system
[[ $(id -u) -ne 0 ]] && mode=user
for a in "$@"; do
  case $a in
    --user) mode=user ;;
    --system) mode=system ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall-alsa: unknown option $a" >&2; exit 2 ;;
  esac
done
prefix=${AUDIOLOOP_ALSA_PREFIX:-}
if [[ $mode == system ]]; then
  conf=$prefix/etc/alsa/conf.d/60-audioloop.conf
  lib=$prefix$(pkg-config --variable=libdir alsa)/alsa-lib/$LIB
  if [[ -f $conf ]] && ! grep -qF "$MARK_BEGIN" "$conf"; then
    echo "uninstall-alsa: $conf was not written by install-alsa.sh; left alone" >&2
  else
    rm -f "$conf"
  fi
  rm -f "$lib"
  echo "uninstall-alsa: removed $conf and $lib" >&2
else
  rc=${XDG_CONFIG_HOME:-$HOME/.config}/alsa/asoundrc
  if [[ -f $rc ]]; then
    tmp=$(mktemp "$rc.XXXXXX")
    awk -v b="$MARK_BEGIN" -v e="$MARK_END" '$0==b{skip=1} !skip{print} $0==e{skip=0}' "$rc" > "$tmp"
    if [[ -s $tmp ]]; then mv -f "$tmp" "$rc"; else rm -f "$tmp" "$rc"; fi
  fi
  echo "uninstall-alsa: removed the audioloop block from $rc" >&2
fi
