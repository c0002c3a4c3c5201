import type { Role } from '@/lib/auth/roles';

export function NotAllowed({ role }: { role?: Role }) {
  return (
    <div className="rounded-lg border border-amber-200 bg-amber-50 p-6" data-testid="not-allowed">
      <h1 className="text-lg font-semibold">Not allowed</h1>
      <p className="mt-1 text-sm">{role ? `Your role (${role}) may not open this page.` : 'You may not open this page.'} Ask an admin if you need it.</p>
    </div>
  );
}
