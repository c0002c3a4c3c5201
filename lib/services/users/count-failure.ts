import type { Catalog } from '../../catalog/db';
import type { Prisma } from '../../generated/prisma/client';

/** After this many wrong passwords in a row the account is locked for LOCK_MINUTES (an admin's reset unlocks it). */
export const MAX_FAILED_SIGN_INS = 5;

export const LOCK_MINUTES = 15;

/**
 * One more failure in a row for this user, and the lock at the fifth, in one atomic statement (parallel guesses
 * cannot slip past the count). Undefined when the account is locked already (nothing counted).
 */
export async function countFailure(db: Catalog | Prisma.TransactionClient, userId: string): Promise<{ locked: boolean; lockedUntil: Date | null } | undefined> {
  const [counted] = await db.$queryRaw<{ failedSignIns: number; lockedUntil: Date | null }[]>`
    UPDATE "User" SET
      "failedSignIns" = CASE WHEN "failedSignIns" + 1 >= ${MAX_FAILED_SIGN_INS} THEN 0 ELSE "failedSignIns" + 1 END,
      "lockedUntil" = CASE WHEN "failedSignIns" + 1 >= ${MAX_FAILED_SIGN_INS} THEN now() + make_interval(mins => ${LOCK_MINUTES}) ELSE "lockedUntil" END
    WHERE "id" = ${userId} AND ("lockedUntil" IS NULL OR "lockedUntil" <= now())
    RETURNING "failedSignIns", "lockedUntil"`;
  if (!counted) return undefined;
  return { locked: counted.lockedUntil !== null && counted.failedSignIns === 0, lockedUntil: counted.lockedUntil };
}
