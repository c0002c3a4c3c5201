import { redirect } from 'next/navigation';
import { SignInForm } from '@/components/auth/sign-in-form';
import { oidcProviderName } from '@/lib/auth/auth';
import { safeCallbackPath } from '@/lib/auth/callback-path';
import { getCurrentUser } from '@/lib/auth/current-user';

export const dynamic = 'force-dynamic';

/** next-auth sends a refused or failed single sign-on back here with `?error=`. */
function singleSignOnError(error: string | undefined): string | undefined {
  if (!error) return undefined;
  if (error === 'AccessDenied') {
    return 'Single sign-on was refused: no enabled vmdedup user is linked to this identity. The first sign-in links the user whose email (set by an admin on the Users page) the identity provider vouches for as verified; later ones go by the identity alone.';
  }
  return `Single sign-on failed (${error.slice(0, 40)}); the server log says why.`;
}

export default async function SignInPage({ searchParams }: { searchParams: Promise<{ callbackUrl?: string; error?: string }> }) {
  const { callbackUrl, error } = await searchParams;
  if (await getCurrentUser()) redirect(safeCallbackPath(callbackUrl));
  return (
    <main className="mx-auto mt-24 max-w-sm px-6">
      <h1 className="mb-1 text-2xl font-semibold">vmdedup</h1>
      <p className="mb-6 text-sm text-slate-500">Sign in to manage backups of your fleet.</p>
      <SignInForm callbackUrl={safeCallbackPath(callbackUrl)} oidcName={oidcProviderName} oidcError={singleSignOnError(error)} />
    </main>
  );
}
