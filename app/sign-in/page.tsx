import { redirect } from 'next/navigation';
import { SignInForm } from '@/components/auth/sign-in-form';
import { oidcProviderName } from '@/lib/auth/auth';
import { getCurrentUser } from '@/lib/auth/current-user';

export const dynamic = 'force-dynamic';

export default async function SignInPage({ searchParams }: { searchParams: Promise<{ callbackUrl?: string }> }) {
  if (await getCurrentUser()) redirect('/');
  const { callbackUrl } = await searchParams;
  return (
    <main className="mx-auto mt-24 max-w-sm px-6">
      <h1 className="mb-1 text-2xl font-semibold">vmdedup</h1>
      <p className="mb-6 text-sm text-slate-500">Sign in to manage backups of your fleet.</p>
      <SignInForm callbackUrl={callbackUrl ?? '/'} oidcName={oidcProviderName} />
    </main>
  );
}
