-- Alerts: where they go (webhook URLs, e-mail addresses), and which standing conditions were already told (an RPO
-- exceeded is told once, until the VM has a good backup again).
CREATE TABLE "AlertChannel" (
  "id" TEXT NOT NULL,
  "kind" TEXT NOT NULL,
  "target" TEXT NOT NULL,
  "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "AlertChannel_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "AlertChannel_kind_target_key" ON "AlertChannel"("kind", "target");

CREATE TABLE "AlertRaised" (
  "key" TEXT NOT NULL,
  "raisedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "AlertRaised_pkey" PRIMARY KEY ("key")
);

ALTER TABLE "ScheduledJob" ADD COLUMN "rpoHours" DOUBLE PRECISION;
