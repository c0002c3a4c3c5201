-- Verify: when each backup image was last re-read and re-hashed in full, and what that found.
ALTER TABLE "BackupImage" ADD COLUMN "verifiedAt" TIMESTAMP(3);
ALTER TABLE "BackupImage" ADD COLUMN "verifyStatus" TEXT;
ALTER TABLE "BackupImage" ADD COLUMN "verifyProblems" JSONB;
