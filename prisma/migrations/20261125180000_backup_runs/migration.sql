-- AlterTable
ALTER TABLE "BackupImage" ADD COLUMN     "runId" TEXT;
