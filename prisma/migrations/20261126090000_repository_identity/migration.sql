-- CreateTable
CREATE TABLE "CatalogRepository" (
    "slot" TEXT NOT NULL DEFAULT 'default',
    "repositoryId" TEXT NOT NULL,
    "location" TEXT NOT NULL,
    "recordedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "CatalogRepository_pkey" PRIMARY KEY ("slot")
);
