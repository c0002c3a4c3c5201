-- AlterTable
ALTER TABLE "Source" ADD COLUMN     "problems" JSONB NOT NULL DEFAULT '[]',
ADD COLUMN     "scannedAt" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "Vm" ADD COLUMN     "lastSeenAt" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "Disk" ADD COLUMN     "parentPath" TEXT,
ADD COLUMN     "sizeBytes" BIGINT NOT NULL DEFAULT 0;
