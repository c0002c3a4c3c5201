-- Workers on several hosts: which workers can run a job (its lane), which one did, and the workers alive.
ALTER TABLE "Job" ADD COLUMN "lane" TEXT NOT NULL DEFAULT 'any';
ALTER TABLE "Job" ADD COLUMN "worker" TEXT;

CREATE TABLE "Worker" (
    "name" TEXT NOT NULL,
    "host" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "sources" JSONB,
    "lanes" TEXT NOT NULL,
    "startedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "seenAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Worker_pkey" PRIMARY KEY ("name")
);
