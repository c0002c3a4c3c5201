-- An image's disk entries become a content-addressed DiskSet shared by every image that names the same entries, and
-- what a run did for each disk (stored, read) an ImageDiskWork row only where it did something. An unchanged VM's
-- backup then costs one BackupImage row, where DiskReference cost one row per disk (a pool's 10,000 clones: 30,000
-- rows a run, each with three foreign keys). "DiskReference" stays as a view with the columns it had (less its id).
CREATE TABLE "DiskSet" (
  "id" TEXT NOT NULL,
  "sourceId" TEXT NOT NULL,
  CONSTRAINT "DiskSet_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "DiskSet_sourceId_fkey" FOREIGN KEY ("sourceId") REFERENCES "Source"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "DiskSet_sourceId_idx" ON "DiskSet"("sourceId");

CREATE TABLE "DiskSetEntry" (
  "diskSetId" TEXT NOT NULL,
  "position" INTEGER NOT NULL,
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
  "logicalBytes" BIGINT NOT NULL,
  CONSTRAINT "DiskSetEntry_pkey" PRIMARY KEY ("diskSetId", "position"),
  CONSTRAINT "DiskSetEntry_diskSetId_fkey" FOREIGN KEY ("diskSetId") REFERENCES "DiskSet"("id") ON DELETE CASCADE ON UPDATE CASCADE,
  -- A set never loses an entry: a disk it names goes only with its source, which takes its sets along (checked at
  -- commit, once every cascade of the source's removal is done).
  CONSTRAINT "DiskSetEntry_diskId_fkey" FOREIGN KEY ("diskId") REFERENCES "Disk"("id") ON DELETE NO ACTION ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED,
  CONSTRAINT "DiskSetEntry_digest_fkey" FOREIGN KEY ("digest") REFERENCES "StoredDisk"("digest") ON DELETE RESTRICT ON UPDATE CASCADE
);
CREATE INDEX "DiskSetEntry_diskId_idx" ON "DiskSetEntry"("diskId");
CREATE INDEX "DiskSetEntry_digest_idx" ON "DiskSetEntry"("digest");

CREATE TABLE "ImageDiskWork" (
  "backupImageId" TEXT NOT NULL,
  "position" INTEGER NOT NULL,
  "action" TEXT NOT NULL,
  "bytesRead" BIGINT NOT NULL,
  "bytesWritten" BIGINT NOT NULL,
  CONSTRAINT "ImageDiskWork_pkey" PRIMARY KEY ("backupImageId", "position"),
  CONSTRAINT "ImageDiskWork_backupImageId_fkey" FOREIGN KEY ("backupImageId") REFERENCES "BackupImage"("id") ON DELETE CASCADE ON UPDATE CASCADE
);

ALTER TABLE "BackupImage" ADD COLUMN "diskSetId" TEXT;
-- The set a VM's disk links were last written from by its own newest image; null once a scan or another VM's image
-- changed them. No foreign key: a marker of content (a set swept and made again has the same id and entries).
ALTER TABLE "Vm" ADD COLUMN "diskSetId" TEXT;
ALTER TABLE "BackupImage" ADD CONSTRAINT "BackupImage_diskSetId_fkey" FOREIGN KEY ("diskSetId") REFERENCES "DiskSet"("id") ON DELETE NO ACTION ON UPDATE CASCADE;
CREATE INDEX "BackupImage_diskSetId_idx" ON "BackupImage"("diskSetId");

-- The references recorded so far, as sets. An image's entries take a fixed order here (the manifest's order is not
-- in the rows); sets made here have ids of their own ('m' and an md5), so a VM's first backup after the upgrade
-- records a new set, and every later unchanged one names it.
CREATE TEMP TABLE "MigratedReference" ON COMMIT DROP AS
  SELECT r.*, v."sourceId",
         (row_number() OVER (PARTITION BY r."backupImageId" ORDER BY r."via", r."path", r."digest", r."id") - 1)::int AS "position"
    FROM "DiskReference" r JOIN "BackupImage" b ON b."id" = r."backupImageId" JOIN "Vm" v ON v."id" = b."vmId";
CREATE TEMP TABLE "MigratedSet" ON COMMIT DROP AS
  SELECT "backupImageId", "sourceId",
         -- JSON: every field quoted and escaped, null as null (a separator could occur in a path, a target).
         'm' || md5(json_build_array("sourceId", json_agg(json_build_array("position", "diskId", "digest", "via", "slot", "target", "path",
           "versionToken", "parentPointer", "parentPath", "parentVersion", "common", "logicalBytes") ORDER BY "position"))::text) AS "diskSetId"
    FROM "MigratedReference" GROUP BY "backupImageId", "sourceId";
INSERT INTO "DiskSet" ("id", "sourceId") SELECT DISTINCT "diskSetId", "sourceId" FROM "MigratedSet";
INSERT INTO "DiskSetEntry" ("diskSetId", "position", "diskId", "digest", "via", "slot", "target", "path", "versionToken",
    "parentPointer", "parentPath", "parentVersion", "common", "logicalBytes")
  SELECT DISTINCT ON (s."diskSetId", r."position") s."diskSetId", r."position", r."diskId", r."digest", r."via", r."slot", r."target",
         r."path", r."versionToken", r."parentPointer", r."parentPath", r."parentVersion", r."common", r."logicalBytes"
    FROM "MigratedReference" r JOIN "MigratedSet" s USING ("backupImageId")
   ORDER BY s."diskSetId", r."position";
UPDATE "BackupImage" b SET "diskSetId" = s."diskSetId" FROM "MigratedSet" s WHERE s."backupImageId" = b."id";
INSERT INTO "ImageDiskWork" ("backupImageId", "position", "action", "bytesRead", "bytesWritten")
  SELECT "backupImageId", "position", "action", "bytesRead", "bytesWritten" FROM "MigratedReference"
   WHERE "action" <> 'referenced' OR "bytesRead" <> 0 OR "bytesWritten" <> 0;
DROP TABLE "DiskReference";

-- One row per image and disk, as the table was: what the reports read.
CREATE VIEW "DiskReference" AS
  SELECT b."id" AS "backupImageId", e."position", e."diskId", e."digest", e."via", e."slot", e."target", e."path", e."versionToken",
         e."parentPointer", e."parentPath", e."parentVersion", e."common", coalesce(w."action", 'referenced') AS "action",
         e."logicalBytes", coalesce(w."bytesRead", 0::bigint) AS "bytesRead", coalesce(w."bytesWritten", 0::bigint) AS "bytesWritten"
    FROM "BackupImage" b
    JOIN "DiskSetEntry" e ON e."diskSetId" = b."diskSetId"
    LEFT JOIN "ImageDiskWork" w ON w."backupImageId" = b."id" AND w."position" = e."position";
