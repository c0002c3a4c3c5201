'use client';

import { useRouter } from 'next/navigation';
import { useState, useTransition } from 'react';
import { createUserAction, resetPasswordAction, resetSecondFactorAction, updateUserAction } from '@/app/(app)/users/actions';
import type { ActionResult } from '@/lib/actions/create-action';
import { ROLES, ROLE_DESCRIPTIONS, type Role } from '@/lib/auth/roles';
import type { UserRow } from '@/lib/services/users/list-users';
import { LocalTime } from '@/components/ui/local-time';

type Notice = { ok: boolean; text: string };

export function UsersAdmin({ users, currentUserId }: { users: UserRow[]; currentUserId: string }) {
  const router = useRouter();
  const [notice, setNotice] = useState<Notice>();
  const [pending, startTransition] = useTransition();
  const run = (work: () => Promise<ActionResult<unknown>>, success: string) => startTransition(async () => {
    const result = await work();
    setNotice(result.ok ? { ok: true, text: success } : { ok: false, text: result.error.message });
    if (result.ok) router.refresh();
  });

  return (
    <div className="space-y-8">
      <h1 className="text-2xl font-semibold">Users</h1>
      {notice && <p role="status" className={`text-sm ${notice.ok ? 'text-green-700' : 'text-red-700'}`}>{notice.text}</p>}

      <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
        <thead className="bg-slate-100 text-left text-slate-600">
          <tr><th className="px-3 py-2">User</th><th className="px-3 py-2">Role</th><th className="px-3 py-2">Status</th><th className="px-3 py-2">Last sign-in</th><th className="px-3 py-2">Actions</th></tr>
        </thead>
        <tbody>
          {users.map((u) => (
            <tr key={u.id} className="border-t border-slate-100" aria-label={`user ${u.username}`}>
              <td className="px-3 py-2">{u.username}{u.email && <span className="text-slate-500"> · {u.email}</span>}{u.id === currentUserId && <span className="text-slate-500"> (you)</span>}</td>
              <td className="px-3 py-2">
                <select aria-label={`Role of ${u.username}`} value={u.role} disabled={pending}
                  onChange={(e) => run(() => updateUserAction({ userId: u.id, role: e.target.value as Role }), `${u.username} is now ${e.target.value}.`)}
                  className="rounded border border-slate-300 px-2 py-1">
                  {ROLES.map((role) => <option key={role} value={role}>{role}</option>)}
                </select>
              </td>
              <td className="px-3 py-2">{u.disabled ? 'disabled' : u.locked ? 'locked' : 'active'}{!u.hasPassword && <span className="text-slate-500"> · single sign-on only</span>}{u.secondFactor && <span className="text-slate-500"> · two-step sign-in</span>}{u.singleSignOnBound && <span className="text-slate-500"> · single sign-on linked</span>}</td>
              <td className="px-3 py-2">{u.lastSignInAt ? <LocalTime iso={u.lastSignInAt} /> : 'never'}</td>
              <td className="flex flex-wrap gap-2 px-3 py-2">
                <button type="button" disabled={pending} className="rounded border border-slate-300 px-2 py-1"
                  onClick={() => run(() => updateUserAction({ userId: u.id, disabled: !u.disabled }), `${u.username} ${u.disabled ? 'enabled' : 'disabled'}.`)}>
                  {u.disabled ? 'Enable' : 'Disable'}
                </button>
                {u.secondFactor && (
                  <button type="button" disabled={pending} className="rounded border border-slate-300 px-2 py-1"
                    onClick={() => run(() => resetSecondFactorAction({ userId: u.id }), `Two-step sign-in of ${u.username} removed; their sessions have ended.`)}>
                    Reset two-step sign-in
                  </button>
                )}
                <InlineEdit label={u.hasPassword ? 'Reset password' : 'Set password'} inputLabel={`New password for ${u.username}`} type="password" disabled={pending}
                  onSave={(password) => run(() => resetPasswordAction({ userId: u.id, password }), `New password set for ${u.username}; their sessions have ended.`)} />
                <InlineEdit label={u.email ? 'Change email' : 'Set email'} inputLabel={`Email of ${u.username}`} type="email" initial={u.email ?? ''} disabled={pending}
                  onSave={(email) => run(() => updateUserAction({ userId: u.id, email }), email ? `${u.username} signs in by single sign-on as ${email}.` : `${u.username}'s email removed.`)} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>

      <form
        aria-label="Add a user"
        className="space-y-3 rounded-lg border border-slate-200 bg-white p-4"
        onSubmit={(e) => {
          e.preventDefault();
          const form = new FormData(e.currentTarget);
          const target = e.currentTarget;
          run(async () => {
            const result = await createUserAction({
              username: String(form.get('username')), email: String(form.get('email') ?? ''),
              role: form.get('role') as Role, password: String(form.get('password')),
            });
            if (result.ok) target.reset();
            return result;
          }, `User ${String(form.get('username'))} added.`);
        }}
      >
        <h2 className="text-lg font-semibold">Add a user</h2>
        <div className="grid gap-3 md:grid-cols-4">
          <label className="text-sm">Username<input name="username" required className="mt-1 w-full rounded border border-slate-300 px-2 py-1" /></label>
          <label className="text-sm">Email (for single sign-on)<input name="email" type="email" className="mt-1 w-full rounded border border-slate-300 px-2 py-1" /></label>
          <label className="text-sm">Role
            <select name="role" defaultValue="viewer" className="mt-1 w-full rounded border border-slate-300 px-2 py-1">
              {ROLES.map((role) => <option key={role} value={role}>{role}: {ROLE_DESCRIPTIONS[role]}</option>)}
            </select>
          </label>
          <label className="text-sm">Password (empty: single sign-on only)<input name="password" type="password" minLength={12} autoComplete="new-password" className="mt-1 w-full rounded border border-slate-300 px-2 py-1" /></label>
        </div>
        <button type="submit" disabled={pending} className="rounded bg-slate-900 px-3 py-1.5 text-sm text-white disabled:opacity-50">Add user</button>
      </form>
    </div>
  );
}

/** A button that opens one field and a Set button (a new password, an email address). */
function InlineEdit({ label, inputLabel, type, initial = '', disabled, onSave }: {
  label: string; inputLabel: string; type: 'password' | 'email'; initial?: string; disabled: boolean; onSave: (value: string) => void;
}) {
  const [open, setOpen] = useState(false);
  const [value, setValue] = useState(initial);
  if (!open) return <button type="button" disabled={disabled} className="rounded border border-slate-300 px-2 py-1" onClick={() => setOpen(true)}>{label}</button>;
  return (
    // A password is kept exactly as typed; an email loses stray spaces.
    <form className="flex gap-1" onSubmit={(e) => { e.preventDefault(); onSave(type === 'password' ? value : value.trim()); setOpen(false); if (type === 'password') setValue(''); }}>
      <input aria-label={inputLabel} type={type} value={value} autoFocus {...(type === 'password' ? { minLength: 12, autoComplete: 'new-password' } : {})}
        onChange={(e) => setValue(e.target.value)} className="rounded border border-slate-300 px-2 py-1" />
      <button type="submit" disabled={disabled} className="rounded bg-slate-900 px-2 py-1 text-white">Set</button>
    </form>
  );
}
