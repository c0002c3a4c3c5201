#!/usr/bin/env bash
# The tests' libvirt host: libvirt-host.sh setup <dir>
#   installs libvirt and QEMU when missing (root, Debian/Ubuntu), starts virtlogd and libvirtd when they are not
#   running (no systemd needed), and makes a tiny guest in <dir>: a kernel taken from Debian's cloud kernel package
#   (extracted, not installed) and a busybox initramfs whose init writes sequence-numbered 64 KiB blocks to
#   /dev/vda (block i to slot (i*97) % 4096, header "SEQ i SLOT s"), the way test/libvirt-host.test.ts checks a
#   backup for point-in-time consistency. Prints nothing on success; one line naming what failed otherwise.
set -euo pipefail
dir=${2:?usage: libvirt-host.sh setup <dir>}
[[ ${1:-} == setup ]] || { echo "usage: libvirt-host.sh setup <dir>" >&2; exit 2; }
packages=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils busybox-static libnbd-bin)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then echo "libvirt tests need: ${missing[*]} (install them as root)" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

alive() { [[ -e $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
alive /run/virtlogd.pid || virtlogd -d
alive /run/libvirtd.pid || libvirtd -d
for _ in $(seq 300); do virsh -c qemu:///system uri >/dev/null 2>&1 && break; sleep 0.1; done
virsh -c qemu:///system capabilities >/dev/null # the first call after an install probes QEMU (seconds)

mkdir -p "$dir"
if [[ ! -s $dir/vmlinuz || ! -s $dir/initrd.img ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  kernel=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  (cd "$work" && apt-get download -qq "$kernel" >/dev/null 2>&1) || { echo "cannot download $kernel" >&2; exit 1; }
  dpkg-deb -x "$work"/*.deb "$work/root"
  modules=$(echo "$work"/root/lib/modules/*/kernel)
  mkdir -p "$work/initrd"/{bin,dev,proc,sys,mod}
  # virtio_blk and what it needs, loaded in this order.
  for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_modern_dev virtio/virtio_pci_legacy_dev virtio/virtio_pci block/virtio_blk; do
    cp "$modules/drivers/$m.ko" "$work/initrd/mod/"
  done
  cp "$(command -v busybox)" "$work/initrd/bin/busybox"
  cat > "$work/initrd/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do insmod /mod/$m.ko; done
n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
echo "GUEST READY"
i=0
while true; do
  slot=$(( (i*97) % 4096 ))
  { echo "SEQ $i SLOT $slot"; head -c 60000 /dev/urandom; } | dd of=/dev/vda bs=64k seek=$slot count=1 iflag=fullblock conv=sync,notrunc 2>/dev/null
  sync; [ $((i % 50)) -eq 0 ] && echo "wrote seq=$i"
  i=$((i+1)); sleep 0.1
done
EOF
  chmod +x "$work/initrd/init"
  (cd "$work/initrd" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$dir/initrd.img")
  cp "$work"/root/boot/vmlinuz-* "$dir/vmlinuz"
fi
# QEMU runs as libvirt-qemu: it must reach the kernel and the test's images.
chmod 755 "$dir"
chmod 644 "$dir/vmlinuz" "$dir/initrd.img"
