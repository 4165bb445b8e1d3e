#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those that are missing: wrk (the HTTP load generator of
# `make bench`) and postgresql (the database server the tuning-worker test starts on loopback, from `make test`).
# Usage: tools/install-debian.sh [PACKAGE ...]   (default: wrk). Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=("${@:-wrk}")      # package names; each is also the command it provides (postgresql: its initdb)

# where a package's command is: on PATH, except PostgreSQL's server programs (/usr/lib/postgresql/<version>/bin)
locate() {
  if [ "$1" = postgresql ]; then
    ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1
  else
    command -v "$1" 2>/dev/null
  fi
}
missing=()
for pkg in "${PACKAGES[@]}"; do
  if found=$(locate "$pkg") && [ -n "$found" ]; then
    echo "install-debian: $pkg already installed ($found)"
  else
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-debian: cannot install ${missing[*]}: apt-get not found (not a Debian/Ubuntu machine); install it by hand" >&2
  exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
  else
    echo "install-debian: cannot install ${missing[*]}: not root and no password-less sudo; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-debian: installing ${missing[*]} (apt-get update && apt-get install -y ${missing[*]})"
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
  echo "install-debian: apt-get failed to install ${missing[*]} (no network to the Debian mirror, or no such package?)" >&2
  exit 1
fi
for pkg in "${missing[@]}"; do
  found=$(locate "$pkg") && [ -n "$found" ] || { echo "install-debian: $pkg was installed but its command is not found" >&2; exit 1; }
  echo "install-debian: $pkg installed ($found)"
done
