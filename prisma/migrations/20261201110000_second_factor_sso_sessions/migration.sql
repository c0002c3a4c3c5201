-- Sign-in (issue #10): a TOTP second factor per user, single sign-on bound to (issuer, subject), and sessions
-- ended server-side by signing out.
ALTER TABLE "User" ADD COLUMN "totpSecret" TEXT,
    ADD COLUMN "totpEnabledAt" TIMESTAMP(3),
    ADD COLUMN "totpLastStep" INTEGER,
    ADD COLUMN "oidcIssuer" TEXT,
    ADD COLUMN "oidcSubject" TEXT;

-- CreateIndex
CREATE UNIQUE INDEX "User_oidcIssuer_oidcSubject_key" ON "User"("oidcIssuer", "oidcSubject");

-- CreateTable
CREATE TABLE "RevokedSession" (
    "id" TEXT NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,
    "revokedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "RevokedSession_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "RevokedSession_expiresAt_idx" ON "RevokedSession"("expiresAt");
