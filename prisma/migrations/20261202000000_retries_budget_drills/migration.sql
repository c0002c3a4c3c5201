-- Retries with back-off for scheduled runs; a read budget and restore drills for verify jobs.
ALTER TABLE "ScheduledJob" ADD COLUMN "retries" INTEGER NOT NULL DEFAULT 2;
ALTER TABLE "ScheduledJob" ADD COLUMN "retryDelayMinutes" DOUBLE PRECISION NOT NULL DEFAULT 10;
ALTER TABLE "ScheduledJob" ADD COLUMN "verifyBudgetBytes" BIGINT;
ALTER TABLE "ScheduledJob" ADD COLUMN "verifyMaxBytesPerSecond" BIGINT;
ALTER TABLE "ScheduledJob" ADD COLUMN "drillVms" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "Job" ADD COLUMN "attempt" INTEGER NOT NULL DEFAULT 1;
ALTER TABLE "Job" ADD COLUMN "retryAt" TIMESTAMP(3);
ALTER TABLE "BackupImage" ADD COLUMN "drilledAt" TIMESTAMP(3);
ALTER TABLE "BackupImage" ADD COLUMN "drillStatus" TEXT;
ALTER TABLE "BackupImage" ADD COLUMN "drillProblems" JSONB;
