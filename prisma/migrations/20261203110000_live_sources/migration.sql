-- A source read through a live libvirt connection (qemu:///system) instead of a folder of domain XML; null: a folder.
ALTER TABLE "Source" ADD COLUMN "uri" TEXT;
-- How a backup image's VM was held while read: application | crash | offline; null: not known (a folder source).
ALTER TABLE "BackupImage" ADD COLUMN "consistency" TEXT;
