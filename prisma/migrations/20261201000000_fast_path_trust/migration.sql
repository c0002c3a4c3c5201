-- Fast-path trust: when a stored version's data was last actually read from the disk (a version read longer ago
-- than `backup --reread-after` is read again), and whether its version token was taken too soon after the disk's
-- last change to be trusted (racily clean).
ALTER TABLE "DiskVersion" ADD COLUMN "readAt" TIMESTAMP(3);
UPDATE "DiskVersion" SET "readAt" = "createdAt";
ALTER TABLE "DiskVersion" ALTER COLUMN "readAt" SET NOT NULL, ALTER COLUMN "readAt" SET DEFAULT CURRENT_TIMESTAMP;

-- Versions recorded before this migration carry no trust information: each is read once more, then trusted.
ALTER TABLE "DiskVersion" ADD COLUMN "racilyClean" BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE "DiskVersion" ALTER COLUMN "racilyClean" SET DEFAULT false;
