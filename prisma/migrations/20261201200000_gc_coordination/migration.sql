-- Garbage collection safe against running backups (lib/engine/gc/README.md): a generation counter bumped when a
-- collection condemns keys, the backups running (each holds an advisory lock on its row's id while it runs), and
-- the keys condemned (a backup that reuses one deletes its row first: rescued; `deleting`: being removed, no
-- longer rescuable).
CREATE TABLE "GcState" (
  "id" TEXT NOT NULL DEFAULT 'default',
  "generation" INTEGER NOT NULL DEFAULT 0,
  "lastRunAt" TIMESTAMP(3),
  "lastReport" JSONB,
  CONSTRAINT "GcState_pkey" PRIMARY KEY ("id")
);
INSERT INTO "GcState" ("id") VALUES ('default');

CREATE TABLE "BackupSession" (
  "id" SERIAL NOT NULL,
  "generation" INTEGER NOT NULL,
  "host" TEXT NOT NULL,
  "pid" INTEGER NOT NULL,
  "startedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "BackupSession_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "CondemnedBlob" (
  "key" TEXT NOT NULL,
  "generation" INTEGER NOT NULL,
  "bytes" BIGINT NOT NULL,
  "deleting" BOOLEAN NOT NULL DEFAULT false,
  CONSTRAINT "CondemnedBlob_pkey" PRIMARY KEY ("key")
);

-- A protected backup is never pruned.
ALTER TABLE "BackupImage" ADD COLUMN "protected" BOOLEAN NOT NULL DEFAULT false;
