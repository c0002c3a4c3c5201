import { z } from 'zod';
import { MIN_PASSWORD_LENGTH } from '../auth/passwords';
import { ROLES } from '../auth/roles';

const ZUsername = z.string().trim().toLowerCase().regex(/^[a-z0-9][a-z0-9._-]{1,39}$/, 'a username is 2–40 letters, digits, dots, dashes or underscores');
const ZPassword = z.string().min(MIN_PASSWORD_LENGTH, `a password has at least ${MIN_PASSWORD_LENGTH} characters`).max(200);
const ZEmail = z.union([z.literal('').transform(() => undefined), z.email('not an email address').trim().toLowerCase()]).optional();

/** `code`: the authenticator app's code, for a user with a second factor (others leave it empty). */
export const ZSignIn = z.object({
  username: z.string().trim().min(1, 'enter your username').max(100), password: z.string().min(1, 'enter your password').max(200),
  code: z.string().max(20).optional(),
});
export type TSignIn = z.infer<typeof ZSignIn>;

/** No password: the user signs in only through single sign-on, by their email. */
export const ZCreateUser = z.object({
  username: ZUsername, email: ZEmail, role: z.enum(ROLES),
  password: z.union([z.literal('').transform(() => undefined), ZPassword]).optional(),
}).refine((user) => user.password || user.email, { message: 'give a password, or an email address for single sign-on only', path: ['password'] });
export type TCreateUser = z.infer<typeof ZCreateUser>;

/** `email`: a new address, '' to remove it, absent to leave it. */
export const ZUpdateUser = z.object({
  userId: z.uuid(), role: z.enum(ROLES).optional(), disabled: z.boolean().optional(),
  email: z.union([z.literal('').transform(() => null), z.email('not an email address').trim().toLowerCase()]).optional(),
});
export type TUpdateUser = z.infer<typeof ZUpdateUser>;

export const ZResetPassword = z.object({ userId: z.uuid(), password: ZPassword });
export type TResetPassword = z.infer<typeof ZResetPassword>;

/** Six digits, as the authenticator app shows them (spaces allowed). */
const ZTotpCode = z.string().trim().transform((code) => code.replace(/\s+/g, '')).pipe(z.string().regex(/^\d{6}$/, 'the code is the six digits your authenticator app shows'));

export const ZConfirmSecondFactor = z.object({ code: ZTotpCode });
export type TConfirmSecondFactor = z.infer<typeof ZConfirmSecondFactor>;

export const ZDisableSecondFactor = z.object({ password: z.string().min(1, 'enter your password').max(200), code: ZTotpCode });
export type TDisableSecondFactor = z.infer<typeof ZDisableSecondFactor>;

export const ZResetSecondFactor = z.object({ userId: z.uuid() });
export type TResetSecondFactor = z.infer<typeof ZResetSecondFactor>;
