'use server';

import { AuthError } from 'next-auth';
import { redirect } from 'next/navigation';
import { signIn, signOut } from '@/lib/auth/auth';
import { safeCallbackPath } from '@/lib/auth/callback-path';
import { mustEnrolSecondFactor } from '@/lib/auth/current-user';
import { ACCOUNT_PATH } from '@/lib/auth/require-user';
import { LOCK_MINUTES, MAX_FAILED_SIGN_INS } from '@/lib/services/users/count-failure';
import { getCatalog } from '@/lib/catalog/db';

export type SignInState = { error?: string };

export async function signInAction(_previous: SignInState, form: FormData): Promise<SignInState> {
  const target = safeCallbackPath(form.get('callbackUrl'));
  try {
    await signIn('credentials', {
      username: form.get('username'), password: form.get('password'), code: form.get('code') ?? '', redirectTo: target, redirect: false,
    });
  } catch (err) {
    // One answer for every refusal: it must not tell an unknown name from a locked account, nor a wrong code from a wrong password.
    if (err instanceof AuthError) return { error: `Wrong username, password or code. After ${MAX_FAILED_SIGN_INS} failures in a row an account is locked for ${LOCK_MINUTES} minutes (an admin can reset its password).` };
    throw err;
  }
  // Signed in. An admin who must enrol a second factor goes straight to the account page: sent to the page asked
  // for, its layout would redirect again while the router renders the action's answer, which Next does not follow.
  const user = await (await getCatalog()).user.findUnique({ where: { username: String(form.get('username') ?? '').trim().toLowerCase() } });
  redirect(user && mustEnrolSecondFactor(user, 'password') ? ACCOUNT_PATH : target);
}

export async function signInWithOidcAction(form: FormData): Promise<void> {
  await signIn('oidc', { redirectTo: safeCallbackPath(form.get('callbackUrl')) });
}

/** Ends this session on the server too (auth.ts's signOut event revokes its id, and audits it). */
export async function signOutAction(): Promise<void> {
  await signOut({ redirectTo: '/sign-in' });
}
