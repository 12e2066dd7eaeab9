#!/usr/bin/env bash
# Installs what the real test node and the image builds need, from Debian/Ubuntu packages:
# containerd and runc (the container runtime), the CNI plugins (pod network), debootstrap (the base
# image's root filesystem), buildah (the daemonless image builder) and iptables/iproute2 (the node's
# one Service rule, its bridge). Idempotent: when every command is there it does nothing, and
# `apt-get update` runs only when a package is missing. Elsewhere (not root, no apt) it prints one
# line naming the packages and succeeds: the in-cluster tests then skip with their reason.
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins debootstrap buildah iptables iproute2)
# One file or command per package, in the same order: what says the package is there.
PROVIDES=(containerd runc /usr/lib/cni/bridge debootstrap buildah iptables ip)

missing=()
for i in "${!PACKAGES[@]}"; do
  probe="${PROVIDES[$i]}"
  if [[ "$probe" == /* ]]; then
    [[ -x "$probe" ]] || missing+=("${PACKAGES[$i]}")
  else
    command -v "$probe" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$probe" >/dev/null 2>&1 \
      || missing+=("${PACKAGES[$i]}")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "real test node: install ${missing[*]} (Debian/Ubuntu: apt-get install ${missing[*]}); until then the in-cluster tests skip"
  exit 0
fi
echo "==> apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
