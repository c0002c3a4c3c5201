-- Chunks and stored disks verify found damaged (and moved aside): no backup reuses them, the one that stores the
-- content again clears them.
CREATE TABLE "DamagedBlob" (
  "key" TEXT NOT NULL,
  "foundAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "DamagedBlob_pkey" PRIMARY KEY ("key")
);
