import type { Role } from '@/lib/auth/roles';

export function NotAllowed({ role, what }: { role: Role; what: string }) {
  return (
    <div className="rounded-lg border border-amber-200 bg-amber-50 p-6" data-testid="not-allowed">
      <h1 className="text-lg font-semibold">Not allowed</h1>
      <p className="mt-1 text-sm">Your role ({role}) may not {what}. Ask an admin if you need it.</p>
    </div>
  );
}
