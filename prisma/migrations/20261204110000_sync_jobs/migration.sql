-- A sync job's copy: the repository (folder or s3://bucket/prefix) it copies the backups into; null for other kinds.
ALTER TABLE "ScheduledJob" ADD COLUMN "syncTo" TEXT;
