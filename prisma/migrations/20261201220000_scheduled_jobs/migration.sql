-- Scheduled jobs: backups (what to back up, what to keep afterwards), garbage collections and verifications, each on a
-- cron schedule in a time zone; their runs are Job rows.
CREATE TABLE "ScheduledJob" (
  "id" TEXT NOT NULL,
  "name" TEXT NOT NULL,
  "kind" TEXT NOT NULL DEFAULT 'backup',
  "source" TEXT,
  "vmPatterns" JSONB NOT NULL DEFAULT '[]',
  "schedule" TEXT NOT NULL,
  "timeZone" TEXT NOT NULL,
  "retention" JSONB NOT NULL DEFAULT '{}',
  "rereadAfterDays" DOUBLE PRECISION,
  "maxRunMinutes" INTEGER,
  "verifyOutdatedAfterDays" DOUBLE PRECISION,
  "enabled" BOOLEAN NOT NULL DEFAULT true,
  "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "scheduledAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "lastRunJobId" TEXT,
  "lastSuccessAt" TIMESTAMP(3),
  CONSTRAINT "ScheduledJob_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "ScheduledJob_name_key" ON "ScheduledJob"("name");
ALTER TABLE "Job" ADD COLUMN "scheduledJobId" TEXT;
