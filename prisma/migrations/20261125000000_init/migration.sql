-- CreateTable
CREATE TABLE "Source" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "path" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Source_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Vm" (
    "id" TEXT NOT NULL,
    "sourceId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "uuid" TEXT NOT NULL DEFAULT '',
    "configPath" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Vm_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Disk" (
    "id" TEXT NOT NULL,
    "sourceId" TEXT NOT NULL,
    "identifier" TEXT NOT NULL,
    "path" TEXT NOT NULL,
    "format" TEXT NOT NULL,
    "common" BOOLEAN NOT NULL DEFAULT false,

    CONSTRAINT "Disk_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "VmDisk" (
    "vmId" TEXT NOT NULL,
    "diskId" TEXT NOT NULL,
    "via" TEXT NOT NULL,
    "slot" TEXT,

    CONSTRAINT "VmDisk_pkey" PRIMARY KEY ("vmId","diskId")
);

-- CreateTable
CREATE TABLE "StoredDisk" (
    "digest" TEXT NOT NULL,
    "format" TEXT NOT NULL,
    "logicalBytes" BIGINT NOT NULL,
    "storedBytes" BIGINT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "StoredDisk_pkey" PRIMARY KEY ("digest")
);

-- CreateTable
CREATE TABLE "DiskVersion" (
    "diskId" TEXT NOT NULL,
    "versionToken" TEXT NOT NULL,
    "digest" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "DiskVersion_pkey" PRIMARY KEY ("diskId","versionToken")
);

-- CreateTable
CREATE TABLE "BackupImage" (
    "id" TEXT NOT NULL,
    "vmId" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL,
    "logicalBytes" BIGINT NOT NULL,
    "bytesRead" BIGINT NOT NULL,
    "bytesWritten" BIGINT NOT NULL,
    "bytesReferenced" BIGINT NOT NULL,

    CONSTRAINT "BackupImage_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "DiskReference" (
    "id" TEXT NOT NULL,
    "backupImageId" TEXT NOT NULL,
    "diskId" TEXT NOT NULL,
    "digest" TEXT NOT NULL,
    "via" TEXT NOT NULL,
    "slot" TEXT,
    "target" TEXT,
    "path" TEXT NOT NULL,
    "versionToken" TEXT NOT NULL,
    "parentPointer" TEXT,
    "parentPath" TEXT,
    "parentVersion" TEXT,
    "common" BOOLEAN NOT NULL,
    "action" TEXT NOT NULL,
    "logicalBytes" BIGINT NOT NULL,
    "bytesRead" BIGINT NOT NULL,
    "bytesWritten" BIGINT NOT NULL,

    CONSTRAINT "DiskReference_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Source_name_key" ON "Source"("name");

-- CreateIndex
CREATE UNIQUE INDEX "Vm_sourceId_name_key" ON "Vm"("sourceId", "name");

-- CreateIndex
CREATE UNIQUE INDEX "Disk_sourceId_identifier_key" ON "Disk"("sourceId", "identifier");

-- CreateIndex
CREATE INDEX "VmDisk_diskId_idx" ON "VmDisk"("diskId");

-- CreateIndex
CREATE INDEX "DiskVersion_digest_idx" ON "DiskVersion"("digest");

-- CreateIndex
CREATE INDEX "BackupImage_vmId_createdAt_idx" ON "BackupImage"("vmId", "createdAt");

-- CreateIndex
CREATE INDEX "DiskReference_backupImageId_idx" ON "DiskReference"("backupImageId");

-- CreateIndex
CREATE INDEX "DiskReference_diskId_idx" ON "DiskReference"("diskId");

-- CreateIndex
CREATE INDEX "DiskReference_digest_idx" ON "DiskReference"("digest");

-- AddForeignKey
ALTER TABLE "Vm" ADD CONSTRAINT "Vm_sourceId_fkey" FOREIGN KEY ("sourceId") REFERENCES "Source"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Disk" ADD CONSTRAINT "Disk_sourceId_fkey" FOREIGN KEY ("sourceId") REFERENCES "Source"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "VmDisk" ADD CONSTRAINT "VmDisk_vmId_fkey" FOREIGN KEY ("vmId") REFERENCES "Vm"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "VmDisk" ADD CONSTRAINT "VmDisk_diskId_fkey" FOREIGN KEY ("diskId") REFERENCES "Disk"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "DiskVersion" ADD CONSTRAINT "DiskVersion_diskId_fkey" FOREIGN KEY ("diskId") REFERENCES "Disk"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "DiskVersion" ADD CONSTRAINT "DiskVersion_digest_fkey" FOREIGN KEY ("digest") REFERENCES "StoredDisk"("digest") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "BackupImage" ADD CONSTRAINT "BackupImage_vmId_fkey" FOREIGN KEY ("vmId") REFERENCES "Vm"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "DiskReference" ADD CONSTRAINT "DiskReference_backupImageId_fkey" FOREIGN KEY ("backupImageId") REFERENCES "BackupImage"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "DiskReference" ADD CONSTRAINT "DiskReference_diskId_fkey" FOREIGN KEY ("diskId") REFERENCES "Disk"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "DiskReference" ADD CONSTRAINT "DiskReference_digest_fkey" FOREIGN KEY ("digest") REFERENCES "StoredDisk"("digest") ON DELETE RESTRICT ON UPDATE CASCADE;
