#!/usr/bin/env bash
# Install vjengine on Debian/Ubuntu, as root: the system libraries it needs, then a virtual
# environment in .venv with vjengine installed into it (the `vj` and `vj-bank` commands).
#
#   bash scripts/setup.sh          the live engine only (what a gig laptop needs)
#   bash scripts/setup.sh --dev    also the bank builder (torch, diffusers) and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    *) echo "setup.sh: unknown option $arg (expected --dev)" >&2; exit 2 ;;
  esac
done

# GL through Mesa (EGL for headless rendering), PortAudio for line-in, the JACK library python-rtmidi
# loads (its PyPI wheel speaks both ALSA and JACK).
pkgs="libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libportaudio2 libasound2-plugins libjack-jackd2-0"
# Test stand-ins for a display, a sound card, a VJ's OSC software and a phone's browser; jackd2: a dummy
# JACK server gives the MIDI tests real ports (the ALSA sequencer needs /dev/snd).
[ "$dev" = 1 ] && pkgs="$pkgs xvfb x11-apps xdotool pulseaudio pulseaudio-utils liblo-tools chromium chromium-driver jackd2"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
  missing="$missing python3-venv"
fi
if [ -n "$missing" ]; then
  echo "setup.sh: installing Debian packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
pip=".venv/bin/python -m pip"
if [ "$dev" = 1 ]; then
  # The CPU build of torch, pinned: a looser pin pulls a multi-GB CUDA build.
  $pip install -q torch==2.13.0
  $pip install -q -e '.[build,test]'
else
  $pip install -q -e '.[link,midi]'
fi
echo "setup.sh: ready. Run .venv/bin/vj demo (or activate with: . .venv/bin/activate)"
