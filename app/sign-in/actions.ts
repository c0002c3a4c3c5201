'use server';

import { AuthError } from 'next-auth';
import { signIn, signOut } from '@/lib/auth/auth';
import { safeCallbackPath } from '@/lib/auth/callback-path';
import { LOCK_MINUTES, MAX_FAILED_SIGN_INS } from '@/lib/catalog/sign-in';

export type SignInState = { error?: string };

export async function signInAction(_previous: SignInState, form: FormData): Promise<SignInState> {
  try {
    await signIn('credentials', {
      username: form.get('username'), password: form.get('password'), code: form.get('code') ?? '',
      redirectTo: safeCallbackPath(form.get('callbackUrl')),
    });
    return {};
  } catch (err) {
    // One answer for every refusal: it must not tell an unknown name from a locked account, nor a wrong code from a wrong password.
    if (err instanceof AuthError) return { error: `Wrong username, password or code. After ${MAX_FAILED_SIGN_INS} failures in a row an account is locked for ${LOCK_MINUTES} minutes (an admin can reset its password).` };
    throw err; // the redirect after a successful sign-in
  }
}

export async function signInWithOidcAction(form: FormData): Promise<void> {
  await signIn('oidc', { redirectTo: safeCallbackPath(form.get('callbackUrl')) });
}

/** Ends this session on the server too (auth.ts's signOut event revokes its id, and audits it). */
export async function signOutAction(): Promise<void> {
  await signOut({ redirectTo: '/sign-in' });
}
