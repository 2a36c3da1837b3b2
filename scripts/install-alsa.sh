#!/usr/bin/env bash
# Installs the audioloop ALSA PCM (alsa/pcm_audioloop.c, built by
# scripts/setup.sh into build/alsa/) so that `arecord -D audioloop:N` works:
#
#   as root:  the plugin into alsa-lib's plugin dir
#             ($(pkg-config --variable=libdir alsa)/alsa-lib) and the PCM
#             definition into /etc/alsa/conf.d/60-audioloop.conf
#   --user (the default when not root): the PCM definition, naming the
#             plugin in this checkout, as a marked block in
#             ${XDG_CONFIG_HOME:-~/.config}/alsa/asoundrc (which alsa-lib
#             reads for the user; the rest of that file is left alone)
#
# --print shows the configuration instead of installing it.
# AUDIOLOOP_ALSA_PREFIX=DIR installs the system files under DIR (tests).
# scripts/uninstall-alsa.sh removes what this installs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LIB=libasound_module_pcm_audioloop.so
BUILT=$ROOT/build/alsa/$LIB
MARK_BEGIN='# >>> audioloop ALSA PCM (scripts/install-alsa.sh; remove with scripts/uninstall-alsa.sh) >>>'
MARK_END='# <<< audioloop ALSA PCM <<<'

mode=system
[[ $(id -u) -ne 0 ]] && mode=user
print=0
for a in "$@"; do
  case $a in
    --user) mode=user ;;
    --system) mode=system ;;
    --print) print=1 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-alsa: unknown option $a" >&2; exit 2 ;;
  esac
done

[[ -f $BUILT ]] || { echo "install-alsa: $BUILT is missing: run scripts/setup.sh (make -C alsa)" >&2; exit 1; }

prefix=${AUDIOLOOP_ALSA_PREFIX:-}
if [[ $mode == system ]]; then
  plugdir=$prefix$(pkg-config --variable=libdir alsa)/alsa-lib
  confdir=$prefix/etc/alsa/conf.d
  lib=$plugdir/$LIB
else
  lib=$BUILT
fi

conf() {
  echo "$MARK_BEGIN"
  echo "pcm_type.audioloop { lib \"$lib\" }"
  grep -v '^# Installed by' alsa/60-audioloop.conf
  echo "$MARK_END"
}

if ((print)); then conf; exit 0; fi

if [[ $mode == system ]]; then
  mkdir -p "$plugdir" "$confdir"
  install -m 0644 "$BUILT" "$lib.tmp" && mv -f "$lib.tmp" "$lib"
  conf > "$confdir/60-audioloop.conf.tmp" && mv -f "$confdir/60-audioloop.conf.tmp" "$confdir/60-audioloop.conf"
  echo "install-alsa: $lib and $confdir/60-audioloop.conf (arecord -D audioloop:N)" >&2
else
  rc=${XDG_CONFIG_HOME:-$HOME/.config}/alsa/asoundrc
  mkdir -p "$(dirname "$rc")"
  touch "$rc"
  # replace our block (if any), keep everything else
  tmp=$(mktemp "$rc.XXXXXX")
  awk -v b="$MARK_BEGIN" -v e="$MARK_END" '$0==b{skip=1} !skip{print} $0==e{skip=0}' "$rc" > "$tmp"
  conf >> "$tmp"
  mv -f "$tmp" "$rc"
  echo "install-alsa: the audioloop PCM in $rc, plugin $lib (arecord -D audioloop:N)" >&2
fi
