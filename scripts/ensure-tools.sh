#!/usr/bin/env bash
# Makes sure the system tools vmdedup needs are present: ensure-tools.sh qemu-img [chromium]
# As root on Debian/Ubuntu they are installed with apt; elsewhere it says exactly what to install.
set -euo pipefail
declare -A package=([qemu-img]=qemu-utils [qemu-io]=qemu-utils [chromium]=chromium [restic]=restic [borg]=borgbackup)
missing=()
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package[$tool]}")
done
((${#missing[@]})) || exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "vmdedup needs: ${missing[*]}. Install them first, e.g. 'sudo apt-get install ${missing[*]}' (Debian/Ubuntu) or your system's equivalent." >&2
  exit 1
fi
