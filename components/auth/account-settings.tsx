'use client';

import { useRouter } from 'next/navigation';
import { useState, useTransition } from 'react';
import { beginSecondFactorAction, confirmSecondFactorAction, disableSecondFactorAction } from '@/app/(app)/account/actions';
import type { ActionResult } from '@/lib/actions/create-action';
import type { Account } from '@/lib/services/users/load-account';
import { LocalTime } from '@/components/ui/local-time';

type Notice = { ok: boolean; text: string };

/** The signed-in user's own account: two-step sign-in (TOTP) set up, confirmed or turned off, and their single sign-on link. */
export function AccountSettings({ account, mustEnrol }: { account: Account; mustEnrol: boolean }) {
  const router = useRouter();
  const [notice, setNotice] = useState<Notice>();
  const [pending, startTransition] = useTransition();
  const run = (work: () => Promise<ActionResult<unknown>>, success?: string, after?: () => void) => startTransition(async () => {
    const result = await work();
    setNotice(result.ok ? (success ? { ok: true, text: success } : undefined) : { ok: false, text: result.error.message });
    if (result.ok) {
      after?.();
      router.refresh();
    }
  });
  const factor = account.secondFactor;

  return (
    <div className="max-w-2xl space-y-6">
      <h1 className="text-2xl font-semibold">Your account</h1>
      <p className="text-sm text-slate-600">{account.username} · {account.role}</p>
      {mustEnrol && (
        <p data-testid="second-factor-required" className="rounded border border-amber-300 bg-amber-50 p-3 text-sm">
          This server requires two-step sign-in for admins (VMDEDUP_REQUIRE_2FA): set it up here before doing anything else.
        </p>
      )}
      {notice && <p role="status" className={`text-sm ${notice.ok ? 'text-green-700' : 'text-red-700'}`}>{notice.text}</p>}

      <section aria-label="Two-step sign-in" className="space-y-3 rounded-lg border border-slate-200 bg-white p-4">
        <h2 className="text-lg font-semibold">Two-step sign-in</h2>
        {!account.hasPassword && factor.state === 'off' && (
          <p className="text-sm text-slate-600">You sign in by single sign-on: your identity provider asks for the second factor.</p>
        )}
        {account.hasPassword && factor.state === 'off' && (
          <>
            <p className="text-sm text-slate-600">Off. With it on, signing in asks for your password and the six-digit code of an authenticator app (any TOTP app).</p>
            <button type="button" disabled={pending} onClick={() => run(() => beginSecondFactorAction({}))}
              className="rounded bg-slate-900 px-3 py-1.5 text-sm text-white disabled:opacity-50">Set up two-step sign-in</button>
          </>
        )}
        {factor.state === 'enrolling' && (
          <div className="space-y-3 text-sm">
            <p>1. Scan this code with your authenticator app, or type the secret into it.</p>
            {/* eslint-disable-next-line @next/next/no-img-element -- a data URL made on the server, not an asset to optimise */}
            <img src={factor.qrCode} alt="QR code for your authenticator app" width={200} height={200} className="rounded border border-slate-200" />
            <p>Secret: <code data-testid="totp-secret" className="break-all rounded bg-slate-100 px-1">{factor.secret}</code></p>
            <p className="text-slate-600">Or open: <code data-testid="totp-uri" className="break-all rounded bg-slate-100 px-1">{factor.uri}</code></p>
            <form aria-label="Confirm two-step sign-in" className="flex items-end gap-2" onSubmit={(e) => {
              e.preventDefault();
              const form = e.currentTarget;
              const code = String(new FormData(form).get('code') ?? '');
              run(() => confirmSecondFactorAction({ code }), 'Two-step sign-in is on: from now on, signing in asks for a code.', () => form.reset());
            }}>
              <label className="block">2. The code your app shows now
                <input name="code" inputMode="numeric" autoComplete="one-time-code" required className="mt-1 block w-40 rounded border border-slate-300 px-2 py-1" />
              </label>
              <button type="submit" disabled={pending} className="rounded bg-slate-900 px-3 py-1.5 text-white disabled:opacity-50">Turn on</button>
              <button type="button" disabled={pending} onClick={() => run(() => beginSecondFactorAction({}), 'A new secret: scan it again.')}
                className="rounded border border-slate-300 px-3 py-1.5">New secret</button>
            </form>
          </div>
        )}
        {factor.state === 'on' && (
          <div className="space-y-3 text-sm">
            <p data-testid="second-factor-on">On since <LocalTime iso={factor.since} />. Lost the phone? An admin can reset it (Users page, or <code>vmdedup user reset-2fa</code>).</p>
            <form aria-label="Turn off two-step sign-in" className="flex flex-wrap items-end gap-2" onSubmit={(e) => {
              e.preventDefault();
              const form = e.currentTarget;
              const data = new FormData(form);
              run(() => disableSecondFactorAction({ password: String(data.get('password') ?? ''), code: String(data.get('code') ?? '') }),
                'Two-step sign-in is off.', () => form.reset());
            }}>
              <label className="block">Your password
                <input name="password" type="password" autoComplete="current-password" required className="mt-1 block rounded border border-slate-300 px-2 py-1" />
              </label>
              <label className="block">Code from your app
                <input name="code" inputMode="numeric" autoComplete="one-time-code" required className="mt-1 block w-40 rounded border border-slate-300 px-2 py-1" />
              </label>
              <button type="submit" disabled={pending} className="rounded border border-red-300 px-3 py-1.5 text-red-700">Turn off</button>
            </form>
          </div>
        )}
      </section>

      {account.singleSignOn && (
        <section aria-label="Single sign-on" className="rounded-lg border border-slate-200 bg-white p-4 text-sm">
          <h2 className="text-lg font-semibold">Single sign-on</h2>
          <p className="text-slate-600">Linked to subject <code>{account.singleSignOn.subject}</code> at <code>{account.singleSignOn.issuer}</code>.</p>
        </section>
      )}
    </div>
  );
}
