-- The folders a source's disks may live in besides its config folder (canonical paths, a JSON array of strings):
-- libvirt's standard layout keeps domain XMLs in /etc/libvirt/qemu and disks in /var/lib/libvirt/images.
ALTER TABLE "Source" ADD COLUMN "storage" JSONB NOT NULL DEFAULT '[]';
