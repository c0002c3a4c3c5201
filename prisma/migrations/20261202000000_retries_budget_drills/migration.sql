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
-- One backup per VM at a time: the VMs (and their config files) a backup session is backing up. A claim holds while
-- its session's advisory lock does; a dead session's claims are taken over by the next run that meets them.
-- Unlogged: claims live no longer than the sessions they belong to (a crash of the database ends those too).
CREATE UNLOGGED TABLE "VmClaim" (
  "key" TEXT NOT NULL,
  "sessionId" INTEGER NOT NULL,
  CONSTRAINT "VmClaim_pkey" PRIMARY KEY ("key"),
  CONSTRAINT "VmClaim_sessionId_fkey" FOREIGN KEY ("sessionId") REFERENCES "BackupSession"("id") ON DELETE CASCADE
);
CREATE INDEX "VmClaim_sessionId_idx" ON "VmClaim"("sessionId");
