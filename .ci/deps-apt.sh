#!/usr/bin/env bash
# Installs the Debian packages given as arguments that are missing (make deps-apt), without
# letting their maintainer scripts start services: a policy-rc.d that denies every start is in
# place during the install (invoke-rc.d and deb-systemd-invoke honour it), and when systemd is
# PID 1 the units of the packages installed here are disabled so a reboot does not start them.
# Services of packages that were already installed are left alone.
set -euo pipefail

missing=()
# A package removed but not purged is still known to dpkg (status "deinstall ok config-files"):
# only "install ok installed" counts as present.
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
for p in "$@"; do installed "$p" || missing+=("$p"); done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=()
[[ $(id -u) == 0 ]] || SUDO=(sudo)

policy=/usr/sbin/policy-rc.d
own_policy=""
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# make deps-apt: no service starts during its install\nexit 101\n' |
        "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    own_policy=1
fi
remove_policy() { if [[ -n $own_policy ]]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap remove_policy EXIT

"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

if [[ $(cat /proc/1/comm 2>/dev/null) == systemd ]]; then
    for p in "${missing[@]}"; do
        for unit in $(dpkg -L "$p" | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.service$' | xargs -r -n1 basename); do
            "${SUDO[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    done
fi
