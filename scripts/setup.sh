#!/usr/bin/env bash
# One-time, idempotent set-up of a Debian/Ubuntu machine for ticketlab:
#   - npm dependencies (npm ci when a lockfile exists),
#   - ffmpeg (frames of videos for `ticketlab faces`),
#   - libjpeg-turbo's TurboJPEG library (libturbojpeg0: the fast JPEG decoder of the first pass),
#   - the Vulkan loader (libvulkan1) and, when Dawn finds no WebGPU adapter,
#     Mesa's lavapipe (software Vulkan) new enough for Dawn.
# Debian 12's own Mesa 22 lavapipe is rejected by Dawn ("shaderUniform*ArrayDynamicIndexing
# required"); Mesa from the bookworm-backports suite works. The backports suite is derived
# from the machine's own apt sources, so no mirror is hard-coded here.
# Says what it did; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
say() { echo "setup: $*"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
have_apt() { command -v apt-get >/dev/null 2>&1; }
apt_updated=0
apt_update() { [ $apt_updated -eq 1 ] || { $SUDO apt-get update -qq; apt_updated=1; }; }
apt_install() {
  apt_update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. npm dependencies
if [ -f package-lock.json ]; then
  if [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    say "npm dependencies already installed"
  else
    say "installing npm dependencies (npm ci)"; npm ci --no-audit --no-fund --loglevel=error
  fi
else
  say "installing npm dependencies (npm install)"; npm install --no-audit --no-fund --loglevel=error
fi

# A shared library from apt unless the machine has it: need_lib SONAME PACKAGE WHAT "WITHOUT IT".
need_lib() {
  if ldconfig -p 2>/dev/null | grep "$1" >/dev/null; then
    say "$3 present"
  elif have_apt; then
    say "installing $3 ($2)"; apt_install "$2"
  else
    say "WARNING: no $3 and no apt-get; $4"
  fi
}

# 2. Vulkan loader
need_lib 'libvulkan.so.1' libvulkan1 "the Vulkan loader" "install libvulkan1 by hand"

# 2b. ffmpeg: `ticketlab faces` reads video frames through it
if command -v ffmpeg >/dev/null 2>&1; then
  say "ffmpeg present"
elif have_apt; then
  say "installing ffmpeg"; apt_install ffmpeg
else
  say "WARNING: no ffmpeg and no apt-get; 'ticketlab faces' cannot read videos until ffmpeg is installed"
fi

# 2c. libturbojpeg: the first pass decodes JPEGs through it (src/data/jpeg-turbo.ts), about 4x faster
# than through sharp, with the same pixels; without it they decode through sharp.
need_lib 'libturbojpeg.so.0' libturbojpeg0 "libjpeg-turbo's TurboJPEG" "JPEGs decode through sharp (slower, same pixels)"

probe() { node scripts/probe-adapter.mjs >/dev/null 2>&1; }

# 3. An adapter Dawn accepts, or lavapipe from backports
if probe; then
  say "WebGPU adapter found: $(node scripts/probe-adapter.mjs 2>/dev/null)"
  exit 0
fi
have_apt || { echo "setup: no WebGPU adapter found and no apt-get to install Mesa's lavapipe" >&2; exit 1; }
. /etc/os-release
codename=${VERSION_CODENAME:-}
mesa_suite=""
if [ "${ID:-}" = debian ] && [ -n "$codename" ] && [ "${VERSION_ID%%.*}" -le 12 ] 2>/dev/null; then
  mesa_suite="$codename-backports"
  if ! grep -rqs -- "$mesa_suite" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Reuse the URI the machine already uses for its main suite.
    uri=$(grep -rhs -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
          | grep -v -- '-security' | head -n1 | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//; s/[[:space:]].*$//' || true)
    [ -n "$uri" ] || { echo "setup: cannot derive a Debian mirror from /etc/apt sources" >&2; exit 1; }
    say "adding the $mesa_suite suite (same mirror as the main suite)"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" "$mesa_suite" | $SUDO tee /etc/apt/sources.list.d/ticketlab-backports.sources >/dev/null
    apt_updated=0
  fi
fi
say "installing Mesa's lavapipe (mesa-vulkan-drivers${mesa_suite:+ from $mesa_suite})"
if [ -n "$mesa_suite" ]; then
  apt_update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t "$mesa_suite" mesa-vulkan-drivers >/dev/null
else
  apt_install mesa-vulkan-drivers
fi
if probe; then
  say "WebGPU adapter found: $(node scripts/probe-adapter.mjs 2>/dev/null)"
else
  echo "setup: still no WebGPU adapter after installing lavapipe; run 'node scripts/probe-adapter.mjs' to see why" >&2
  node scripts/probe-adapter.mjs || true
  exit 1
fi
