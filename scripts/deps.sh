#!/usr/bin/env bash
# deps.sh - installs, on Debian 12, the packages weft's build, tests and demo
# need; does nothing when they are all there. Uses sudo only when not root.
#   scripts/deps.sh [extra-package...]
# A package named for another architecture (check:arm64) turns that
# architecture on first (dpkg --add-architecture, Debian's multiarch).
set -euo pipefail
pkgs=(cmake make gcc pkg-config libboost-context-dev check "$@")
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
for p in "${missing[@]}"; do
    case $p in *:*) arch=${p##*:} ;; *) continue ;; esac
    if [ "$arch" != "$(dpkg --print-architecture)" ] &&
        ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        echo "== adding the $arch architecture (multiarch)" >&2
        $sudo dpkg --add-architecture "$arch"
    fi
done
echo "== installing ${missing[*]}" >&2
$sudo apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
