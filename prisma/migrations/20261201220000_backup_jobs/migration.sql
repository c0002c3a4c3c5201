-- Backup jobs: what to back up, when (a cron schedule in a time zone), what to keep afterwards, and their runs.
CREATE TABLE "BackupJob" (
  "id" TEXT NOT NULL,
  "name" TEXT NOT NULL,
  "source" TEXT,
  "vmPatterns" JSONB NOT NULL DEFAULT '[]',
  "schedule" TEXT NOT NULL,
  "timeZone" TEXT NOT NULL,
  "retention" JSONB NOT NULL DEFAULT '{}',
  "rereadAfterDays" DOUBLE PRECISION,
  "maxRunMinutes" INTEGER,
  "enabled" BOOLEAN NOT NULL DEFAULT true,
  "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "scheduledAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "lastRunJobId" TEXT,
  "lastSuccessAt" TIMESTAMP(3),
  CONSTRAINT "BackupJob_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "BackupJob_name_key" ON "BackupJob"("name");
ALTER TABLE "Job" ADD COLUMN "backupJobId" TEXT;
