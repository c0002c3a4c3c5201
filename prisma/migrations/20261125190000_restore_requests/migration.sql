-- CreateTable
CREATE TABLE "ApprovalPolicy" (
    "id" TEXT NOT NULL DEFAULT 'default',
    "inPlace" BOOLEAN NOT NULL DEFAULT true,
    "overwriteCommon" BOOLEAN NOT NULL DEFAULT true,
    "drift" BOOLEAN NOT NULL DEFAULT true,
    "allowOverwrite" BOOLEAN NOT NULL DEFAULT true,
    "expiryHours" INTEGER NOT NULL DEFAULT 24,
    "updatedBy" TEXT NOT NULL DEFAULT 'system',
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ApprovalPolicy_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "RestoreRequest" (
    "id" TEXT NOT NULL,
    "vm" TEXT NOT NULL,
    "source" TEXT NOT NULL,
    "backupId" TEXT NOT NULL,
    "target" JSONB NOT NULL,
    "policy" TEXT NOT NULL,
    "choice" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "requestedBy" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMP(3) NOT NULL,
    "plan" JSONB NOT NULL,
    "fingerprint" TEXT NOT NULL,
    "confirmation" TEXT NOT NULL,
    "approvalReasons" JSONB NOT NULL,
    "decidedBy" TEXT,
    "decidedAt" TIMESTAMP(3),
    "decisionNote" TEXT,
    "jobId" TEXT,
    "result" JSONB,
    "error" TEXT,

    CONSTRAINT "RestoreRequest_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "RestoreRequest_status_idx" ON "RestoreRequest"("status");

-- CreateIndex
CREATE INDEX "RestoreRequest_createdAt_idx" ON "RestoreRequest"("createdAt");

-- AlterTable
ALTER TABLE "Source" ADD COLUMN     "inventoryDigest" TEXT;
