#!/usr/bin/env bash
# Installs the system packages ecmem needs, only those missing.
# ZooKeeper (server and Java) for cluster metadata, redis-server as the benchmark peer,
# fuse3 for the region mount; fio and mpich for the mount's tests and examples.
set -euo pipefail

packages=(zookeeper redis-server fuse3 libfuse3-dev pkg-config fio mpich)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: done"
