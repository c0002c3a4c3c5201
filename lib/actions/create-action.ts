/**
 * The one wrapper every server action goes through: who is calling (signed in, enabled, current session),
 * may their role do this, is the input valid — then one service call. Refusals are audited. Results are
 * `{ ok: true, data } | { ok: false, error }`; unexpected errors are logged with an id the user can quote.
 */
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import { type CurrentUser, getCurrentUser } from '../auth/current-user';
import { type Permission, can } from '../auth/roles';
import { recordAudit } from '../catalog/audit';
import { type Catalog, getCatalog } from '../catalog/db';
import { isUserError, toAppError } from '../errors';

export type ActionError = { code: string; message: string };
export type ActionResult<T> = { ok: true; data: T } | { ok: false; error: ActionError };

export function createAction<S extends z.ZodType, R>(
  name: string,
  schema: S,
  permission: Permission,
  handler: (input: z.output<S>, context: { user: CurrentUser; db: Catalog }) => Promise<R>,
  /** `beforeSecondFactor`: the few actions (enrolling one) an admin who must enrol a second factor may call. */
  options: { beforeSecondFactor?: boolean } = {},
): (input: z.input<S>) => Promise<ActionResult<R>> {
  return async (input) => {
    const user = await getCurrentUser();
    if (!user) return { ok: false, error: { code: 'UNAUTHENTICATED', message: 'Your session has ended: sign in again.' } };
    const db = await getCatalog();
    if (user.mustEnrolSecondFactor && !options.beforeSecondFactor) {
      await recordAudit(db, { actor: user.username, action: 'denied', target: name, detail: { reason: 'second factor required (VMDEDUP_REQUIRE_2FA)' } });
      return { ok: false, error: { code: 'SECOND_FACTOR_REQUIRED', message: 'Set up two-step sign-in on your account page first.' } };
    }
    if (!can(user.role, permission)) {
      await recordAudit(db, { actor: user.username, action: 'denied', target: name, detail: { role: user.role, needs: permission } });
      return { ok: false, error: { code: 'FORBIDDEN', message: `Your role (${user.role}) may not do this.` } };
    }
    const parsed = schema.safeParse(input);
    if (!parsed.success) return { ok: false, error: { code: 'BAD_INPUT', message: parsed.error.issues.map((issue) => issue.message).join('; ') } };
    try {
      return { ok: true, data: await handler(parsed.data, { user, db }) };
    } catch (err) {
      const error = toAppError(err);
      if (isUserError(error)) return { ok: false, error: { code: error.code, message: error.userMessage } };
      const id = randomBytes(4).toString('hex');
      console.error(`vmdedup: action ${name} failed (error ${id}):`, err);
      return { ok: false, error: { code: error.code, message: error.code === 'REPOSITORY' || error.code === 'UNAVAILABLE' ? error.userMessage : `Something went wrong (error ${id}); the server log has the details.` } };
    }
  };
}
