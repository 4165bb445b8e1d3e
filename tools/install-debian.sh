#!/usr/bin/env bash
# Installs the Debian packages `make bench` needs (wrk: the HTTP load generator), only those that are missing.
# Usage: tools/install-debian.sh [PACKAGE ...]   (default: wrk). Needs root (or sudo) only when something is missing.
# `make test` and CI never need it: a measurement that needs wrk is a benchmark, not a test.
set -euo pipefail

PACKAGES=("${@:-wrk}")      # package names; each is also the command it provides
missing=()
for pkg in "${PACKAGES[@]}"; do
  if command -v "$pkg" >/dev/null 2>&1; then
    echo "install-debian: $pkg already installed ($(command -v "$pkg"))"
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
  command -v "$pkg" >/dev/null 2>&1 || { echo "install-debian: $pkg was installed but no '$pkg' command is on PATH" >&2; exit 1; }
  echo "install-debian: $pkg installed ($(command -v "$pkg"))"
done
