import Link from 'next/link';
import type { CurrentUser } from '@/lib/auth/current-user';
import { type Permission, can } from '@/lib/auth/roles';
import { signOutAction } from '@/app/sign-in/actions';

const LINKS: { href: string; label: string; permission: Permission }[] = [
  { href: '/', label: 'Overview', permission: 'read' },
  { href: '/vms', label: 'VMs', permission: 'read' },
  { href: '/graph', label: 'Graph', permission: 'read' },
  { href: '/savings', label: 'Savings', permission: 'read' },
  { href: '/backups', label: 'Backups & jobs', permission: 'read' },
  { href: '/schedules', label: 'Schedules', permission: 'read' },
  { href: '/restores', label: 'Restores', permission: 'read' },
  { href: '/sources', label: 'Sources', permission: 'read' },
  { href: '/users', label: 'Users', permission: 'manage' },
  { href: '/audit', label: 'Audit log', permission: 'audit' },
];

export function AppHeader({ user, pendingApprovals }: { user: CurrentUser; pendingApprovals?: number }) {
  return (
    <header className="border-b border-slate-200 bg-white">
      <div className="mx-auto flex max-w-6xl items-center gap-6 px-6 py-3">
        <Link href="/" className="text-lg font-semibold">vmdedup</Link>
        <nav aria-label="Main" className="flex gap-4 text-sm">
          {LINKS.filter((link) => can(user.role, link.permission)).map((link) => (
            <Link key={link.href} href={link.href} className="text-slate-600 hover:text-slate-900">
              {link.label}
              {link.href === '/restores' && pendingApprovals ? (
                <span data-testid="pending-approvals" aria-label={`${pendingApprovals} awaiting approval`} className="ml-1 rounded-full bg-amber-500 px-1.5 text-xs text-white">{pendingApprovals}</span>
              ) : null}
            </Link>
          ))}
        </nav>
        <div className="ml-auto flex items-center gap-3 text-sm">
          <Link href="/account" title="Your account: two-step sign-in" data-testid="signed-in-as" className="hover:underline">{user.username} <span className="text-slate-500">({user.role})</span></Link>
          <form action={signOutAction}>
            <button type="submit" className="rounded border border-slate-300 px-2 py-1 hover:bg-slate-100">Sign out</button>
          </form>
        </div>
      </div>
    </header>
  );
}
