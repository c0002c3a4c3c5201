'use client';

import { useActionState } from 'react';
import { type SignInState, signInAction, signInWithOidcAction } from '@/app/sign-in/actions';

export function SignInForm({ callbackUrl, oidcName, oidcError }: { callbackUrl: string; oidcName?: string; oidcError?: string }) {
  const [state, action, pending] = useActionState<SignInState, FormData>(signInAction, {});
  return (
    <div className="space-y-4">
      <form action={action} className="space-y-4 rounded-lg border border-slate-200 bg-white p-6">
        <input type="hidden" name="callbackUrl" value={callbackUrl} />
        <label className="block text-sm">
          <span className="text-slate-700">Username</span>
          <input name="username" autoComplete="username" required className="mt-1 w-full rounded border border-slate-300 px-3 py-2" />
        </label>
        <label className="block text-sm">
          <span className="text-slate-700">Password</span>
          <input name="password" type="password" autoComplete="current-password" required className="mt-1 w-full rounded border border-slate-300 px-3 py-2" />
        </label>
        <label className="block text-sm">
          <span className="text-slate-700">Authentication code</span>
          <span className="ml-1 text-xs text-slate-500">(only if you set up two-step sign-in)</span>
          <input name="code" inputMode="numeric" autoComplete="one-time-code" pattern="[0-9 ]*" maxLength={8} className="mt-1 w-full rounded border border-slate-300 px-3 py-2" />
        </label>
        {state.error && <p data-testid="sign-in-error" className="text-sm text-red-700">{state.error}</p>}
        <button type="submit" disabled={pending} className="w-full rounded bg-slate-900 px-3 py-2 text-white disabled:opacity-50">
          {pending ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      {oidcName && (
        <form action={signInWithOidcAction} className="space-y-2">
          <input type="hidden" name="callbackUrl" value={callbackUrl} />
          <button type="submit" className="w-full rounded border border-slate-300 bg-white px-3 py-2">Sign in with {oidcName}</button>
          {oidcError && <p data-testid="sso-error" role="alert" className="text-sm text-red-700">{oidcError}</p>}
        </form>
      )}
    </div>
  );
}
