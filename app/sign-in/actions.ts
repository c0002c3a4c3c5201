'use server';

import { AuthError } from 'next-auth';
import { auth, signIn, signOut } from '@/lib/auth/auth';
import { safeCallbackPath } from '@/lib/auth/callback-path';
import { recordAudit } from '@/lib/catalog/audit';
import { LOCK_MINUTES, MAX_FAILED_SIGN_INS } from '@/lib/catalog/sign-in';
import { getCatalog } from '@/lib/db';

export type SignInState = { error?: string };


export async function signInAction(_previous: SignInState, form: FormData): Promise<SignInState> {
  try {
    await signIn('credentials', { username: form.get('username'), password: form.get('password'), redirectTo: safeCallbackPath(form.get('callbackUrl')) });
    return {};
  } catch (err) {
    // One answer for every refusal: it must not tell an unknown name from a locked account.
    if (err instanceof AuthError) return { error: `Wrong username or password. After ${MAX_FAILED_SIGN_INS} wrong passwords in a row an account is locked for ${LOCK_MINUTES} minutes (an admin can reset its password).` };
    throw err; // the redirect after a successful sign-in
  }
}

export async function signInWithOidcAction(form: FormData): Promise<void> {
  await signIn('oidc', { redirectTo: safeCallbackPath(form.get('callbackUrl')) });
}

export async function signOutAction(): Promise<void> {
  const session = await auth();
  if (session?.user?.name) await recordAudit(await getCatalog(), { actor: session.user.name, action: 'sign-out', target: session.user.name });
  await signOut({ redirectTo: '/sign-in' });
}
